//! Every region of a mask and its holes, as outlines on pixel corners: what
//! `Mask.polygons` carries, so that clients get YOLO- or COCO-ready outlines without
//! tracing RLE themselves.
//!
//! Regions are the 8-connected foreground components ([`polygon::components`]), holes the
//! 4-connected background components that do not reach the image border (the two
//! connectivities are each other's complement, so every boundary is a simple closed
//! curve). Outlines are traced along pixel *edges* ("crack following", [`trace`]): vertices
//! lie on pixel corners, only where the direction changes (as OpenCV's
//! `CHAIN_APPROX_SIMPLE`), so an unsimplified outline encloses exactly its pixels and the
//! outlines rasterised together with the even-odd rule ([`polygon::rasterize`]) give the
//! mask back pixel for pixel; [`polygon::simplify`] then removes staircase steps.
//!
//! This is one of the two tracers of [`crate::masks`]. The other, [`super::contours`], is
//! OpenCV's `findContours` point for point (pixel centres, Suzuki-Abe border following,
//! OpenCV's order), which the YOLO labels of `mobilesam annotate` must match; its vertices
//! cut boundary pixels in half, these cover them, so neither can stand in for the other.

use super::polygon::{self, Vertex, EPSILON_PER_PERIMETER};

/// One 8-connected region of a mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Foreground pixels of the region.
    pub area: u64,
    /// Outer outline, clockwise on screen (y down), vertices on pixel corners.
    pub outline: Vec<Vertex>,
    /// The outline of each hole, counter-clockwise on screen, in raster order of the holes.
    pub holes: Vec<Vec<Vertex>>,
}

/// Every region of a `height x width` row-major mask (non-zero is foreground), largest
/// first (ties in raster order), each with its holes. Each outline is simplified with the
/// tolerance `min(epsilon, EPSILON_PER_PERIMETER * its perimeter)` pixels (as
/// `approxPolyDP(c, 0.005 * arcLength(c))` would cap it); `epsilon <= 0` keeps every corner.
pub fn mask_regions(data: &[u8], height: usize, width: usize, epsilon: f64) -> Vec<Region> {
    let (labels, areas) = polygon::components(data, height, width);
    let (hole_labels, hole_count) = hole_components(&labels, height, width);
    let simplified = |ring: Vec<Vertex>| {
        if epsilon <= 0.0 {
            return ring;
        }
        let eps = epsilon.min(EPSILON_PER_PERIMETER * polygon::perimeter(&ring));
        polygon::simplify(&ring, eps)
    };
    let mut regions: Vec<Region> = areas
        .iter()
        .map(|&area| Region {
            area,
            outline: Vec::new(),
            holes: Vec::new(),
        })
        .collect();
    // One raster pass finds the first pixel of every region and every hole.
    let mut region_seen = vec![false; areas.len()];
    let mut hole_seen = vec![false; hole_count];
    for index in 0..height * width {
        let (x, y) = ((index % width) as i64, (index / width) as i64);
        if labels[index] != 0 {
            let k = labels[index] as usize - 1;
            if !region_seen[k] {
                region_seen[k] = true;
                let target = labels[index];
                let ring = trace(
                    |px, py| label_at(&labels, height, width, px, py) == Some(target),
                    (x, y),
                    Connectivity::Eight,
                );
                regions[k].outline = simplified(ring);
            }
        } else if hole_labels[index] != 0 {
            let h = hole_labels[index] as usize - 1;
            if !hole_seen[h] {
                hole_seen[h] = true;
                let target = hole_labels[index];
                let mut ring = trace(
                    |px, py| label_at(&hole_labels, height, width, px, py) == Some(target),
                    (x, y),
                    Connectivity::Four,
                );
                // Counter-clockwise, from the same first corner.
                ring[1..].reverse();
                // The first pixel of a hole has foreground above it, and that pixel belongs
                // to the region around the hole (anything inside the hole lies lower).
                let parent = labels[index - width] as usize - 1;
                regions[parent].holes.push(simplified(ring));
            }
        }
    }
    // Largest first; the sort is stable, so equal areas stay in raster order.
    regions.sort_by_key(|r| std::cmp::Reverse(r.area));
    regions
}

/// The label at `(x, y)`, `None` outside the image.
fn label_at(labels: &[u32], height: usize, width: usize, x: i64, y: i64) -> Option<u32> {
    if x < 0 || y < 0 || x as usize >= width || y as usize >= height {
        return None;
    }
    Some(labels[y as usize * width + x as usize])
}

/// Labels of the holes: background pixels 4-connected to each other and not to the image
/// border, given the foreground labels (0 = background). Returns `(labels, count)`, label
/// `k + 1` for hole `k`, in raster order of their first pixels.
fn hole_components(foreground: &[u32], height: usize, width: usize) -> (Vec<u32>, usize) {
    // 0: not yet visited background or foreground; OUTSIDE: background reaching the border.
    const OUTSIDE: u32 = u32::MAX;
    let mut labels = vec![0u32; height * width];
    let mut stack = Vec::new();
    let background = |i: usize| foreground[i] == 0;
    let flood = |labels: &mut Vec<u32>, start: usize, label: u32, stack: &mut Vec<usize>| {
        labels[start] = label;
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % width, p / width);
            let mut visit = |q: usize| {
                if background(q) && labels[q] == 0 {
                    labels[q] = label;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < width {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - width);
            }
            if y + 1 < height {
                visit(p + width);
            }
        }
    };
    for y in 0..height {
        for x in 0..width {
            let on_border = y == 0 || x == 0 || y + 1 == height || x + 1 == width;
            let i = y * width + x;
            if on_border && background(i) && labels[i] == 0 {
                flood(&mut labels, i, OUTSIDE, &mut stack);
            }
        }
    }
    let mut count = 0usize;
    for i in 0..height * width {
        if background(i) && labels[i] == 0 {
            count += 1;
            flood(&mut labels, i, count as u32, &mut stack);
        }
    }
    for label in &mut labels {
        if *label == OUTSIDE {
            *label = 0;
        }
    }
    (labels, count)
}

/// Which pixels touching only at a corner belong together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connectivity {
    /// Diagonal neighbours are connected (foreground regions).
    Eight,
    /// Only edge neighbours are connected (holes, the complement of 8-connected regions).
    Four,
}

/// The outer boundary of the connected pixel set `inside`, walked along pixel edges from
/// the top-left corner of `start` (its first pixel in raster order), the set kept on the
/// right: clockwise on screen, a vertex where the direction changes.
fn trace(
    inside: impl Fn(i64, i64) -> bool,
    start: (i64, i64),
    connectivity: Connectivity,
) -> Vec<Vertex> {
    // Directions: 0 right, 1 down, 2 left, 3 up (screen coordinates, y down).
    const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    // The pixels ahead of corner (x, y) for each direction, as offsets:
    // (left-ahead, right-ahead).
    const AHEAD: [((i64, i64), (i64, i64)); 4] = [
        ((0, -1), (0, 0)),
        ((0, 0), (-1, 0)),
        ((-1, 0), (-1, -1)),
        ((-1, -1), (0, -1)),
    ];
    let mut vertices = vec![[start.0 as f64, start.1 as f64]];
    let mut dir = 0usize;
    let mut pos = (start.0 + 1, start.1);
    // Only one of the four pixels at the start corner is in the set (the first pixel in
    // raster order), so the walk passes that corner once: when it closes.
    while pos != start {
        let ((lx, ly), (rx, ry)) = AHEAD[dir];
        let left = inside(pos.0 + lx, pos.1 + ly);
        let right = inside(pos.0 + rx, pos.1 + ry);
        let turn_left = match connectivity {
            Connectivity::Eight => left,
            // A left-ahead pixel joined only by a corner is another set under 4-connectivity.
            Connectivity::Four => left && right,
        };
        let new_dir = if turn_left {
            (dir + 3) % 4
        } else if right {
            dir
        } else {
            (dir + 1) % 4
        };
        if new_dir != dir {
            vertices.push([pos.0 as f64, pos.1 as f64]);
            dir = new_dir;
        }
        pos = (pos.0 + STEP[dir].0, pos.1 + STEP[dir].1);
    }
    vertices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let h = rows.len();
        let w = rows[0].len();
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (data, h, w)
    }

    /// Even-odd rasterisation of every ring together.
    fn rasterize_all(regions: &[Region], h: usize, w: usize) -> Vec<u8> {
        let mut out = vec![0u8; h * w];
        for region in regions {
            for ring in std::iter::once(&region.outline).chain(&region.holes) {
                for (o, v) in out.iter_mut().zip(polygon::rasterize(ring, h, w)) {
                    *o ^= v;
                }
            }
        }
        out
    }

    #[test]
    fn a_ring_with_an_island_gives_two_regions_and_a_hole() {
        let (data, h, w) = mask(&["#######", "#.....#", "#..#..#", "#.....#", "#######"]);
        let regions = mask_regions(&data, h, w, 0.0);
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[0].area, 20);
        assert_eq!(
            regions[0].outline,
            vec![[0.0, 0.0], [7.0, 0.0], [7.0, 5.0], [0.0, 5.0]]
        );
        // The hole, counter-clockwise.
        assert_eq!(
            regions[0].holes,
            vec![vec![[1.0, 1.0], [1.0, 4.0], [6.0, 4.0], [6.0, 1.0]]]
        );
        assert_eq!(regions[1].area, 1);
        assert!(regions[1].holes.is_empty());
        assert_eq!(rasterize_all(&regions, h, w), data);
    }

    #[test]
    fn diagonal_contacts_join_regions_and_split_holes() {
        // Two holes touching at a corner are two holes; the foreground around them is one
        // 8-connected region.
        let (data, h, w) = mask(&["#####", "#.###", "##.##", "#####"]);
        let regions = mask_regions(&data, h, w, 0.0);
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].holes.len(), 2);
        assert_eq!(rasterize_all(&regions, h, w), data);
    }

    /// A deterministic pseudo-random mask with blobs, holes and specks.
    fn noisy_mask(h: usize, w: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut data: Vec<u8> = (0..h * w).map(|_| u8::from(next() % 100 < 55)).collect();
        // One smoothing pass makes blobs rather than salt and pepper.
        let copy = data.clone();
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let s: u32 = [(0, 1), (2, 1), (1, 0), (1, 2), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| u32::from(copy[(y + dy - 1) * w + x + dx - 1]))
                    .sum();
                data[y * w + x] = u8::from(s >= 3);
            }
        }
        data
    }

    #[test]
    fn unsimplified_outlines_give_every_mask_back() {
        for seed in 0..40 {
            let (h, w) = (13 + (seed as usize % 7), 17 + (seed as usize % 5));
            let data = noisy_mask(h, w, seed);
            let regions = mask_regions(&data, h, w, 0.0);
            assert_eq!(rasterize_all(&regions, h, w), data, "seed {seed}");
            let area: u64 = regions.iter().map(|r| r.area).sum();
            assert_eq!(area, data.iter().map(|&v| u64::from(v)).sum::<u64>());
            assert!(regions.windows(2).all(|p| p[0].area >= p[1].area));
        }
    }

    #[test]
    fn empty_and_full_masks() {
        assert!(mask_regions(&[0; 12], 3, 4, 1.0).is_empty());
        assert!(mask_regions(&[], 0, 0, 1.0).is_empty());
        let full = mask_regions(&[1; 12], 3, 4, 1.0);
        assert_eq!(full.len(), 1);
        assert_eq!(
            full[0].outline,
            vec![[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]]
        );
    }
}

/// The largest region's outline against its pixels, found independently of the tracer
/// (the largest component by its labels, its holes filled by a flood from the border).
#[cfg(test)]
mod largest_region_tests {
    use super::polygon::{components, rasterize, DEFAULT_EPSILON};
    use super::*;

    /// The largest region's outline on its own: what the annotate polygon was (the largest
    /// 8-connected component, holes filled), now the first of [`mask_regions`].
    fn mask_polygon(data: &[u8], height: usize, width: usize, epsilon: f64) -> Option<Vec<Vertex>> {
        mask_regions(data, height, width, epsilon)
            .into_iter()
            .next()
            .map(|region| region.outline)
    }

    /// [`mask_polygon`] unsimplified.
    fn outer_contour(data: &[u8], height: usize, width: usize) -> Option<Vec<Vertex>> {
        mask_polygon(data, height, width, 0.0)
    }

    /// The largest 8-connected component as a 0/1 mask (ties: the first in raster order);
    /// `None` for an empty mask.
    fn largest_component(data: &[u8], height: usize, width: usize) -> Option<Vec<u8>> {
        let (labels, areas) = polygon::components(data, height, width);
        let best = largest_label(&areas)?;
        Some(labels.iter().map(|&l| u8::from(l == best)).collect())
    }

    fn largest_label(areas: &[u64]) -> Option<u32> {
        let mut best: Option<(u64, usize)> = None;
        for (i, &a) in areas.iter().enumerate() {
            if best.is_none_or(|(ba, _)| a > ba) {
                best = Some((a, i));
            }
        }
        best.map(|(_, i)| i as u32 + 1)
    }

    /// Fills the holes of a 0/1 mask: background not 4-connected to the image border becomes
    /// foreground.
    fn fill_holes(data: &[u8], height: usize, width: usize) -> Vec<u8> {
        let mut outside = vec![false; height * width];
        let mut stack: Vec<usize> = Vec::new();
        for y in 0..height {
            for x in 0..width {
                if (y == 0 || x == 0 || y + 1 == height || x + 1 == width)
                    && data[y * width + x] == 0
                {
                    outside[y * width + x] = true;
                    stack.push(y * width + x);
                }
            }
        }
        while let Some(p) = stack.pop() {
            let (y, x) = (p / width, p % width);
            let mut visit = |q: usize| {
                if data[q] == 0 && !outside[q] {
                    outside[q] = true;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < width {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - width);
            }
            if y + 1 < height {
                visit(p + width);
            }
        }
        outside.iter().map(|&o| u8::from(!o)).collect()
    }

    fn iou(a: &[u8], b: &[u8]) -> f64 {
        let (mut i, mut u) = (0u64, 0u64);
        for (&x, &y) in a.iter().zip(b) {
            i += u64::from(x != 0 && y != 0);
            u += u64::from(x != 0 || y != 0);
        }
        if u == 0 {
            1.0
        } else {
            i as f64 / u as f64
        }
    }

    fn shape(h: usize, w: usize, f: impl Fn(usize, usize) -> bool) -> Vec<u8> {
        (0..h * w).map(|i| u8::from(f(i % w, i / w))).collect()
    }

    fn disk(h: usize, w: usize, cx: f64, cy: f64, r: f64) -> Vec<u8> {
        shape(h, w, |x, y| {
            (x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2) <= r * r
        })
    }

    /// Unsimplified contours give the component back exactly; simplified ones within 0.9.
    fn check(mask: &[u8], h: usize, w: usize) {
        let expected = fill_holes(&largest_component(mask, h, w).unwrap(), h, w);
        let contour = outer_contour(mask, h, w).unwrap();
        assert_eq!(rasterize(&contour, h, w), expected, "exact contour");
        let simple = mask_polygon(mask, h, w, DEFAULT_EPSILON).unwrap();
        assert!(simple.len() <= contour.len());
        let score = iou(&rasterize(&simple, h, w), &expected);
        assert!(score >= 0.9, "IoU {score}");
    }

    #[test]
    fn rectangle_is_four_corners() {
        let m = shape(20, 30, |x, y| (5..25).contains(&x) && (3..15).contains(&y));
        let c = outer_contour(&m, 20, 30).unwrap();
        assert_eq!(c, vec![[5.0, 3.0], [25.0, 3.0], [25.0, 15.0], [5.0, 15.0]]);
        check(&m, 20, 30);
    }

    #[test]
    fn single_pixel_and_border_pixels() {
        let m = shape(5, 5, |x, y| x == 2 && y == 2);
        assert_eq!(outer_contour(&m, 5, 5).unwrap().len(), 4);
        check(&m, 5, 5);
        let full = vec![1u8; 12];
        check(&full, 3, 4);
        let corner = shape(6, 6, |x, y| x + y >= 8);
        check(&corner, 6, 6);
    }

    #[test]
    fn disks() {
        for &(h, w, r) in &[
            (64, 64, 20.0),
            (48, 64, 8.0),
            (200, 300, 70.0),
            (30, 30, 3.5),
        ] {
            let m = disk(h, w, w as f64 / 2.0, h as f64 / 2.0, r);
            check(&m, h, w);
            let simple = mask_polygon(&m, h, w, DEFAULT_EPSILON).unwrap();
            let exact = outer_contour(&m, h, w).unwrap();
            if r > 10.0 {
                assert!(
                    simple.len() < exact.len(),
                    "{} vs {}",
                    simple.len(),
                    exact.len()
                );
            }
        }
    }

    #[test]
    fn l_shape_and_hole() {
        let l = shape(40, 40, |x, y| {
            (5..15).contains(&x) && (5..35).contains(&y)
                || (5..30).contains(&x) && (25..35).contains(&y)
        });
        check(&l, 40, 40);
        let ring = shape(50, 50, |x, y| {
            let d = (x as f64 + 0.5 - 25.0).powi(2) + (y as f64 + 0.5 - 25.0).powi(2);
            (100.0..=400.0).contains(&d)
        });
        check(&ring, 50, 50);
        // The outer contour ignores the hole: the polygon covers the filled disk.
        let filled = rasterize(&outer_contour(&ring, 50, 50).unwrap(), 50, 50);
        assert_eq!(filled[25 * 50 + 25], 1);
    }

    #[test]
    fn largest_component_wins_and_diagonals_connect() {
        let m = shape(30, 30, |x, y| {
            (2..6).contains(&x) && (2..6).contains(&y)
                || (10..25).contains(&x) && (10..28).contains(&y)
        });
        let c = outer_contour(&m, 30, 30).unwrap();
        assert_eq!(c[0], [10.0, 10.0]);
        check(&m, 30, 30);
        // A diagonal chain is one 8-connected component.
        let diag = shape(10, 10, |x, y| x == y);
        let (_, areas) = components(&diag, 10, 10);
        assert_eq!(areas, vec![10]);
        check(&diag, 10, 10);
        // A checkerboard (dot lattice) is one component too.
        let checker = shape(16, 16, |x, y| (x + y) % 2 == 0);
        check(&checker, 16, 16);
        // Sparse dots: the first of equal components.
        let dots = shape(16, 16, |x, y| x % 4 == 1 && y % 4 == 1);
        let c = outer_contour(&dots, 16, 16).unwrap();
        assert_eq!(c[0], [1.0, 1.0]);
        check(&dots, 16, 16);
    }

    #[test]
    fn empty_mask_has_no_polygon() {
        assert!(mask_polygon(&[0; 20], 4, 5, 1.0).is_none());
        assert!(rasterize(&[[0.0, 0.0], [1.0, 1.0]], 3, 3)
            .iter()
            .all(|&v| v == 0));
    }
}
