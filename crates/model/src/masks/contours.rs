//! Every region of a mask as polygons, the way Ultralytics' labels have them.
//!
//! [`external_contours`] reproduces OpenCV's `findContours(mask, RETR_EXTERNAL,
//! CHAIN_APPROX_SIMPLE)` point for point: Suzuki-Abe border following from the first pixel
//! (raster order) of each outer border, 8-connected, vertices on pixel centres where the
//! direction changes, regions inside holes left out, and the list in OpenCV's order (the
//! last border found first). [`merge_segments`] is Ultralytics' `merge_multi_segment`: the
//! regions joined into one ring through zero-width bridges between their closest points,
//! which is what `masks2segments` (strategy `"all"`, the default) writes into YOLO-seg
//! labels; [`mask_segments`] chains the two.
//!
//! Points are [`Vertex`]es with whole-number coordinates (OpenCV's `int32` points). This is
//! the second tracer of [`crate::masks`], kept because its output must be OpenCV's: the
//! outlines of [`super::regions`] (the server's polygons) run along pixel edges through
//! pixel corners and cover the boundary pixels, these run through the boundary pixels'
//! centres, and OpenCV's start points, turning rule and order differ as well.

use super::polygon::Vertex;

/// Direction steps of the border follower, OpenCV's chain code: E, NE, N, NW, W, SW, S,
/// SE (y down).
const STEPS: [(isize, isize); 8] = [
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];

/// Marks left by the follower, as OpenCV's: a border pixel, and one whose east neighbour
/// is background (the scan leaves the region there).
const MARK: i8 = 2;
const MARK_EXIT: i8 = 2 | -128;

/// The outer contours of a `height x width` row-major mask (non-zero is foreground), as
/// `cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]`.
pub fn external_contours(data: &[u8], height: usize, width: usize) -> Vec<Vec<Vertex>> {
    let (h, w) = (height, width);
    if h == 0 || w == 0 || data.len() < h * w {
        return Vec::new();
    }
    // A one-pixel background frame, as OpenCV adds.
    let stride = w + 2;
    let mut img = vec![0i8; (h + 2) * stride];
    for y in 0..h {
        for x in 0..w {
            img[(y + 1) * stride + x + 1] = i8::from(data[y * w + x] != 0);
        }
    }
    let deltas: Vec<isize> = STEPS
        .iter()
        .chain(STEPS.iter())
        .map(|&(dx, dy)| dy * stride as isize + dx)
        .collect();
    let mut found = Vec::new();
    for y in 1..=h {
        let mut prev = 0i8;
        // The last border pixel passed on this row (the frame at first).
        let mut last_border = y * stride;
        let mut x = 1;
        while x <= w {
            let at = y * stride + x;
            let p = img[at];
            if p != prev {
                let outer_start = prev == 0 && p == 1;
                // In RETR_EXTERNAL, only outer borders whose last border on the left is
                // not a region's left side (i.e. not inside another region) are traced.
                if outer_start && img[last_border] <= 0 {
                    found.push(follow(&mut img, &deltas, at, stride));
                    prev = img[at];
                    x += 1;
                    continue;
                }
                prev = p;
                if prev & -2 != 0 {
                    last_border = at;
                }
            }
            x += 1;
        }
    }
    found.reverse();
    found
}

/// Follows the outer border that starts at `start` (index in the framed image), marking
/// it, and returns its CHAIN_APPROX_SIMPLE vertices in mask coordinates.
fn follow(img: &mut [i8], deltas: &[isize], start: usize, stride: usize) -> Vec<Vertex> {
    let to_point = |i: usize| -> Vertex {
        [
            (i % stride) as f64 - 1.0, // the frame
            (i / stride) as f64 - 1.0,
        ]
    };
    let step = |i: usize, s: usize| (i as isize + deltas[s]) as usize;
    let mut points = Vec::new();
    // The first foreground neighbour, searching clockwise on screen from north-west.
    let mut s = 4usize;
    let s_end = s;
    let mut i1;
    loop {
        s = (s + 7) & 7;
        i1 = step(start, s);
        if img[i1] != 0 || s == s_end {
            break;
        }
    }
    if s == s_end && img[i1] == 0 {
        img[start] = MARK_EXIT;
        points.push(to_point(start));
        return points;
    }
    let mut i3 = start;
    let mut prev_s = s ^ 4;
    let mut pt = to_point(start);
    loop {
        let s_end = s;
        let mut i4;
        loop {
            s += 1;
            i4 = step(i3, s);
            if img[i4] != 0 || s >= 15 {
                break;
            }
        }
        s &= 7;
        if s.wrapping_sub(1) < s_end {
            img[i3] = MARK_EXIT;
        } else if img[i3] == 1 {
            img[i3] = MARK;
        }
        if s != prev_s {
            points.push(pt);
            prev_s = s;
        }
        pt[0] += STEPS[s].0 as f64;
        pt[1] += STEPS[s].1 as f64;
        if i4 == start && i3 == i1 {
            break;
        }
        i3 = i4;
        s = (s + 4) & 7;
    }
    points
}

/// Ultralytics' `merge_multi_segment`: joins several rings into one through their
/// closest points (a zero-width bridge there and back), the result as one point list.
pub fn merge_segments(segments: &[Vec<Vertex>]) -> Vec<Vertex> {
    let n = segments.len();
    if n == 0 {
        return Vec::new();
    }
    let mut segs: Vec<Vec<Vertex>> = segments.to_vec();
    let mut idx_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 1..n {
        let (a, b) = closest_pair(&segs[i - 1], &segs[i]);
        idx_list[i - 1].push(a);
        idx_list[i].push(b);
    }
    let mut out: Vec<Vertex> = Vec::new();
    // Forward: each ring rotated to start at its first bridge point and closed; middle
    // rings contribute the arc between their two bridge points.
    for i in 0..n {
        let mut idx = idx_list[i].clone();
        if idx.is_empty() {
            idx.push(0);
        }
        let len = segs[i].len();
        if idx.len() == 2 && idx[0] > idx[1] {
            idx = idx.iter().map(|&x| len - 1 - x).collect();
            segs[i].reverse();
        }
        segs[i].rotate_left(idx[0] % len.max(1));
        let first = segs[i][0];
        segs[i].push(first);
        if i == 0 || i == n - 1 {
            out.extend_from_slice(&segs[i]);
        } else {
            let end = idx[1] - idx[0];
            out.extend_from_slice(&segs[i][..=end]);
        }
    }
    // Backward: the rest of each middle ring, on the way back.
    for i in (0..n).rev() {
        if i != 0 && i != n - 1 {
            let idx = &idx_list[i];
            let nidx = idx[1].abs_diff(idx[0]);
            out.extend_from_slice(&segs[i][nidx..]);
        }
    }
    out
}

/// NumPy's `unravel_index(argmin(squared distances))`: the first closest pair in row-major
/// order. The points are whole pixels, so their differences are exact and the squared
/// distances are compared as integers, as NumPy does on OpenCV's `int32` points.
fn closest_pair(a: &[Vertex], b: &[Vertex]) -> (usize, usize) {
    let mut best = (i64::MAX, 0, 0);
    for (i, p) in a.iter().enumerate() {
        for (j, q) in b.iter().enumerate() {
            let dx = (p[0] - q[0]) as i64;
            let dy = (p[1] - q[1]) as i64;
            let d = dx * dx + dy * dy;
            if d < best.0 {
                best = (d, i, j);
            }
        }
    }
    (best.1, best.2)
}

/// Ultralytics' `masks2segments` for one mask: all outer contours merged into one point
/// list (one contour as it is); empty for an empty mask.
pub fn mask_segments(data: &[u8], height: usize, width: usize) -> Vec<Vertex> {
    let contours = external_contours(data, height, width);
    match contours.len() {
        0 => Vec::new(),
        1 => contours.into_iter().next().unwrap_or_default(),
        _ => merge_segments(&contours),
    }
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

    #[test]
    fn a_square_has_four_corners_counter_clockwise() {
        let (d, h, w) = mask(&["....", ".##.", ".##.", "...."]);
        assert_eq!(
            external_contours(&d, h, w),
            vec![vec![[1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [2.0, 1.0]]]
        );
    }

    #[test]
    fn regions_in_holes_are_left_out_and_order_is_reversed() {
        let (d, h, w) = mask(&[
            "#......", //
            "..#####", //
            "..#...#", //
            "..#.#.#", //
            "..#...#", //
            "..#####", //
        ]);
        let c = external_contours(&d, h, w);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1], vec![[0.0, 0.0]]);
        assert_eq!(c[0][0], [2.0, 1.0]);
    }

    #[test]
    fn two_rings_merge_through_their_closest_points() {
        let a = vec![[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]];
        let b = vec![[3.0, 0.0], [3.0, 1.0], [4.0, 1.0], [4.0, 0.0]];
        let merged = merge_segments(&[a, b]);
        // Two pairs are 2 apart; NumPy's argmin takes the first in row-major order: a's
        // [1, 1] (index 2) with b's [3, 1]. Ring a from there, closed, then ring b.
        let expected = [
            [1.0, 1.0],
            [1.0, 0.0],
            [0.0, 0.0],
            [0.0, 1.0],
            [1.0, 1.0],
            [3.0, 1.0],
            [4.0, 1.0],
            [4.0, 0.0],
            [3.0, 0.0],
            [3.0, 1.0],
        ];
        assert_eq!(merged, expected);
    }
}
