//! Masks to polygons and back: the outer contour of a mask's largest connected component,
//! simplified, and even-odd polygon rasterisation.
//!
//! [`outer_contour`] traces the outer boundary of the largest 8-connected foreground
//! component (by pixel count) along pixel *edges* ("crack following"): vertices lie on pixel
//! corners, so the unsimplified polygon encloses exactly that component with its holes
//! filled, and [`rasterize`] (pixel centres, even-odd rule) gives it back pixel for pixel.
//! Only direction changes are kept (as OpenCV's `CHAIN_APPROX_SIMPLE`); [`simplify`]
//! (Douglas-Peucker on the closed ring) then removes staircase steps. Ultralytics uses
//! OpenCV's `findContours(RETR_EXTERNAL)` and keeps the largest contour; OpenCV's
//! vertices are pixel centres, these are pixel corners (the polygon covers the boundary
//! pixels entirely rather than cutting them in half).

/// A polygon vertex, in pixels: `x` right, `y` down, (0, 0) the top-left image corner.
pub type Vertex = [f64; 2];

/// Douglas-Peucker tolerance used by [`mask_polygon`], in pixels.
pub const DEFAULT_EPSILON: f64 = 1.0;

/// Fraction of the contour's length that caps the Douglas-Peucker tolerance, so small
/// shapes keep their detail (as `approxPolyDP(c, 0.005 * arcLength(c))` would).
pub const EPSILON_PER_PERIMETER: f64 = 0.005;

/// The simplified outer contour of the largest component of a `height x width` row-major
/// mask (non-zero is foreground); `None` for an empty mask. The Douglas-Peucker tolerance
/// is `min(epsilon, EPSILON_PER_PERIMETER * perimeter)` pixels.
pub fn mask_polygon(data: &[u8], height: usize, width: usize, epsilon: f64) -> Option<Vec<Vertex>> {
    let contour = outer_contour(data, height, width)?;
    let eps = epsilon.min(EPSILON_PER_PERIMETER * perimeter(&contour));
    Some(simplify(&contour, eps))
}

/// The length of a closed polygon's outline.
pub fn perimeter(ring: &[Vertex]) -> f64 {
    (0..ring.len())
        .map(|i| dist2(ring[i], ring[(i + 1) % ring.len()]).sqrt())
        .sum()
}

/// Labels of the 8-connected foreground components: `(labels, areas)`, label 0 background,
/// component `k` has label `k + 1` and `areas[k]` pixels.
pub fn components(data: &[u8], height: usize, width: usize) -> (Vec<u32>, Vec<u64>) {
    let n = height * width;
    let mut labels = vec![0u32; n];
    let mut areas = Vec::new();
    let mut stack = Vec::new();
    for start in 0..n.min(data.len()) {
        if data[start] == 0 || labels[start] != 0 {
            continue;
        }
        areas.push(0u64);
        let label = areas.len() as u32;
        labels[start] = label;
        stack.push(start);
        while let Some(p) = stack.pop() {
            areas[label as usize - 1] += 1;
            let (y, x) = ((p / width) as isize, (p % width) as isize);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= height as isize || nx >= width as isize {
                        continue;
                    }
                    let q = ny as usize * width + nx as usize;
                    if data.get(q).is_some_and(|&v| v != 0) && labels[q] == 0 {
                        labels[q] = label;
                        stack.push(q);
                    }
                }
            }
        }
    }
    (labels, areas)
}

/// The largest 8-connected component as a 0/1 mask (ties: the first in raster order);
/// `None` for an empty mask.
pub fn largest_component(data: &[u8], height: usize, width: usize) -> Option<Vec<u8>> {
    let (labels, areas) = components(data, height, width);
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

/// The outer boundary of the largest 8-connected component, vertices on pixel corners,
/// clockwise on screen (y down), only where the direction changes; `None` for an empty mask.
pub fn outer_contour(data: &[u8], height: usize, width: usize) -> Option<Vec<Vertex>> {
    let (labels, areas) = components(data, height, width);
    let target = largest_label(&areas)?;
    let first = labels.iter().position(|&l| l == target)?;
    let fg = |x: i64, y: i64| -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < height
            && labels[y as usize * width + x as usize] == target
    };
    // Directions: 0 right, 1 down, 2 left, 3 up (screen coordinates, y down).
    const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    // The pixels ahead of corner (cx, cy) when heading in each direction, as offsets:
    // (left-ahead, right-ahead); the foreground is kept on the right.
    const AHEAD: [((i64, i64), (i64, i64)); 4] = [
        ((0, -1), (0, 0)),
        ((0, 0), (-1, 0)),
        ((-1, 0), (-1, -1)),
        ((-1, -1), (0, -1)),
    ];
    let start = ((first % width) as i64, (first / width) as i64);
    let mut vertices = vec![[start.0 as f64, start.1 as f64]];
    let mut dir = 0usize;
    let mut pos = (start.0 + 1, start.1);
    // Each boundary edge is walked once; the bound only guards against a logic error.
    let limit = 4 * (height * width) + 8;
    for _ in 0..limit {
        if pos == start {
            break;
        }
        let ((lx, ly), (rx, ry)) = AHEAD[dir];
        let new_dir = if fg(pos.0 + lx, pos.1 + ly) {
            (dir + 3) % 4 // turn left (diagonal neighbours are connected)
        } else if fg(pos.0 + rx, pos.1 + ry) {
            dir
        } else {
            (dir + 1) % 4 // turn right
        };
        if new_dir != dir {
            vertices.push([pos.0 as f64, pos.1 as f64]);
            dir = new_dir;
        }
        pos = (pos.0 + STEP[dir].0, pos.1 + STEP[dir].1);
    }
    Some(vertices)
}

/// Douglas-Peucker simplification of a closed polygon: vertices closer than `epsilon`
/// pixels to the simplified outline are dropped. A result with fewer than three vertices
/// (a tiny shape under a large epsilon) gives the input back unchanged.
pub fn simplify(ring: &[Vertex], epsilon: f64) -> Vec<Vertex> {
    if ring.len() <= 3 || epsilon <= 0.0 {
        return ring.to_vec();
    }
    // Split the ring at vertex 0 and the vertex farthest from it.
    let far = (1..ring.len())
        .max_by(|&a, &b| dist2(ring[0], ring[a]).total_cmp(&dist2(ring[0], ring[b])))
        .unwrap_or(1);
    let mut keep = vec![false; ring.len()];
    keep[0] = true;
    keep[far] = true;
    let closed: Vec<Vertex> = ring
        .iter()
        .copied()
        .chain(std::iter::once(ring[0]))
        .collect();
    douglas_peucker(&closed, 0, far, epsilon, &mut keep);
    let mut keep_tail = vec![false; closed.len()];
    douglas_peucker(&closed, far, ring.len(), epsilon, &mut keep_tail);
    let out: Vec<Vertex> = (0..ring.len())
        .filter(|&i| keep[i] || keep_tail[i])
        .map(|i| ring[i])
        .collect();
    if out.len() < 3 {
        ring.to_vec()
    } else {
        out
    }
}

fn dist2(a: Vertex, b: Vertex) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// Distance from `p` to the segment `a`-`b`.
fn segment_distance(p: Vertex, a: Vertex, b: Vertex) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return dist2(p, a).sqrt();
    }
    let t = (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0);
    dist2(p, [a[0] + t * dx, a[1] + t * dy]).sqrt()
}

/// Marks in `keep` the vertices strictly between `first` and `last` that survive.
fn douglas_peucker(points: &[Vertex], first: usize, last: usize, eps: f64, keep: &mut [bool]) {
    let mut stack = vec![(first, last)];
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (mut best, mut best_d) = (a, -1.0);
        for i in a + 1..b {
            let d = segment_distance(points[i], points[a], points[b]);
            if d > best_d {
                best = i;
                best_d = d;
            }
        }
        if best_d > eps {
            keep[best] = true;
            stack.push((a, best));
            stack.push((best, b));
        }
    }
}

/// Rasterises a closed polygon (pixel coordinates) to a `height x width` row-major 0/1
/// mask: a pixel is inside when its centre is, by the even-odd rule.
pub fn rasterize(polygon: &[Vertex], height: usize, width: usize) -> Vec<u8> {
    let mut mask = vec![0u8; height * width];
    if polygon.len() < 3 {
        return mask;
    }
    let mut xs = Vec::new();
    for y in 0..height {
        let cy = y as f64 + 0.5;
        xs.clear();
        for i in 0..polygon.len() {
            let a = polygon[i];
            let b = polygon[(i + 1) % polygon.len()];
            // Half-open in y so a vertex on the scan line is counted once.
            if (a[1] <= cy) != (b[1] <= cy) {
                xs.push(a[0] + (cy - a[1]) / (b[1] - a[1]) * (b[0] - a[0]));
            }
        }
        xs.sort_by(f64::total_cmp);
        for pair in xs.chunks_exact(2) {
            // Pixels whose centre x + 0.5 lies in [pair[0], pair[1]).
            let from = (pair[0] - 0.5).ceil().max(0.0) as usize;
            let to = (pair[1] - 0.5).ceil().clamp(0.0, width as f64) as usize;
            for x in from..to {
                mask[y * width + x] = 1;
            }
        }
    }
    mask
}

/// Fills the holes of a 0/1 mask: background not 4-connected to the image border becomes
/// foreground.
pub fn fill_holes(data: &[u8], height: usize, width: usize) -> Vec<u8> {
    let mut outside = vec![false; height * width];
    let mut stack: Vec<usize> = Vec::new();
    for y in 0..height {
        for x in 0..width {
            if (y == 0 || x == 0 || y + 1 == height || x + 1 == width) && data[y * width + x] == 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
