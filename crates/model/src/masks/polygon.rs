//! The geometry shared by the mask outlines: the one point type ([`Vertex`]), the
//! 8-connected components of a mask ([`components`]), Douglas-Peucker simplification of a
//! closed ring ([`simplify`]) with its tolerance ([`DEFAULT_EPSILON`],
//! [`EPSILON_PER_PERIMETER`]), and even-odd rasterisation ([`rasterize`]), which gives an
//! unsimplified outline of [`super::regions`] back pixel for pixel.

/// A polygon vertex, in pixels: `x` right, `y` down, (0, 0) the top-left image corner. The
/// outlines of [`super::regions`] have them on pixel corners, the OpenCV contours of
/// [`super::contours`] on pixel centres (whole numbers either way).
pub type Vertex = [f64; 2];

/// The default Douglas-Peucker tolerance of mask outlines, in pixels.
pub const DEFAULT_EPSILON: f64 = 1.0;

/// Fraction of the contour's length that caps the Douglas-Peucker tolerance, so small
/// shapes keep their detail (as `approxPolyDP(c, 0.005 * arcLength(c))` would).
pub const EPSILON_PER_PERIMETER: f64 = 0.005;

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
