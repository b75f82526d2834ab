//! Label writers: YOLO segmentation txt files and COCO instances JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mobilesam_model::masks::polygon::Vertex;
use serde::{Deserialize, Serialize};

/// One segmented object.
#[derive(Debug, Clone)]
pub struct Object {
    /// Class id of its detection.
    pub class: i64,
    /// Confidence of its detection.
    pub conf: f64,
    /// Each region's outer contour (OpenCV's points), pixels.
    pub regions: Vec<Vec<Vertex>>,
    /// The regions joined into one point list as Ultralytics' `masks2segments`, pixels.
    pub segment: Vec<Vertex>,
    /// Mask box `[x, y, w, h]`, pixels.
    pub bbox: [f32; 4],
    /// Mask pixels.
    pub area: u64,
}

/// `<dir>/<image stem>.txt`.
pub fn yolo_path(dir: &Path, image: &Path) -> PathBuf {
    let stem = image.file_stem().unwrap_or_default();
    let mut name = stem.to_os_string();
    name.push(".txt");
    dir.join(name)
}

/// One YOLO segmentation line per object: `class x1 y1 x2 y2 ...` (every region, joined
/// as Ultralytics does), normalized by the image width and height, six decimals.
pub fn yolo_text(width: u32, height: u32, objects: &[Object]) -> String {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut text = String::new();
    for object in objects {
        text.push_str(&object.class.to_string());
        for [x, y] in &object.segment {
            text.push_str(&format!(" {:.6} {:.6}", x / w, y / h));
        }
        text.push('\n');
    }
    text
}

/// Writes the labels of `image` (an empty file when there are no objects, so a resumed run
/// skips it), through a temporary file so an interrupted run leaves no partial labels.
pub fn write_yolo(
    dir: &Path,
    image: &Path,
    width: u32,
    height: u32,
    objects: &[Object],
) -> Result<()> {
    let path = yolo_path(dir, image);
    let part = path.with_extension("txt.part");
    std::fs::write(&part, yolo_text(width, height, objects))
        .with_context(|| format!("cannot write {}", part.display()))?;
    std::fs::rename(&part, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// A COCO instances document.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CocoDocument {
    pub images: Vec<CocoImage>,
    pub annotations: Vec<CocoAnnotation>,
    pub categories: Vec<CocoCategory>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CocoAnnotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: i64,
    /// One polygon per region of the mask: `[[x1, y1, x2, y2, ...], ...]`, pixels.
    pub segmentation: Vec<Vec<f64>>,
    /// `[x, y, w, h]` of the mask.
    pub bbox: [f32; 4],
    /// Mask pixels.
    pub area: u64,
    pub iscrowd: u8,
    /// The detection's confidence.
    pub score: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CocoCategory {
    pub id: i64,
    pub name: String,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl CocoDocument {
    /// Reads an earlier run's output.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not COCO instances JSON (use --overwrite to replace it)",
                path.display()
            )
        })
    }

    /// Whether `image` (by file name) is already in the document.
    pub fn has_image(&self, image: &Path) -> bool {
        let name = file_name(image);
        self.images.iter().any(|im| im.file_name == name)
    }

    /// Adds an image and its objects; new ids follow the largest ones present. New
    /// categories are named from `names` (by class id) where it has them, else by number.
    pub fn add_image(
        &mut self,
        image: &Path,
        width: u32,
        height: u32,
        objects: &[Object],
        names: &[String],
    ) {
        let image_id = self.images.iter().map(|im| im.id).max().unwrap_or(0) + 1;
        let first_ann_id = self.annotations.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        self.images.push(CocoImage {
            id: image_id,
            file_name: file_name(image),
            width,
            height,
        });
        for (ann_id, object) in (first_ann_id..).zip(objects) {
            let round = |v: f64| (v * 100.0).round() / 100.0;
            self.annotations.push(CocoAnnotation {
                id: ann_id,
                image_id,
                category_id: object.class,
                segmentation: object
                    .regions
                    .iter()
                    .map(|ring| {
                        ring.iter()
                            .flat_map(|&[x, y]| [round(x), round(y)])
                            .collect()
                    })
                    .collect(),
                bbox: object.bbox,
                area: object.area,
                iscrowd: 0,
                score: object.conf,
            });
        }
        let known: BTreeSet<i64> = self.categories.iter().map(|c| c.id).collect();
        let new: BTreeSet<i64> = objects
            .iter()
            .map(|o| o.class)
            .filter(|c| !known.contains(c))
            .collect();
        for id in new {
            let name = usize::try_from(id)
                .ok()
                .and_then(|i| names.get(i))
                .cloned()
                .unwrap_or_else(|| id.to_string());
            self.categories.push(CocoCategory { id, name });
        }
        self.categories.sort_by_key(|c| c.id);
    }

    /// Writes the document (through a temporary file).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.images.sort_by_key(|im| im.id);
        let part = path.with_extension("json.part");
        let text = serde_json::to_string(self)?;
        std::fs::write(&part, text).with_context(|| format!("cannot write {}", part.display()))?;
        std::fs::rename(&part, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yolo_lines_are_normalized() {
        let object = Object {
            class: 3,
            conf: 0.5,
            regions: vec![vec![[0.0, 0.0], [32.0, 0.0], [32.0, 24.0]]],
            segment: vec![[0.0, 0.0], [32.0, 0.0], [32.0, 24.0]],
            bbox: [0.0, 0.0, 32.0, 24.0],
            area: 10,
        };
        assert_eq!(
            yolo_text(64, 48, &[object]),
            "3 0.000000 0.000000 0.500000 0.000000 0.500000 0.500000\n"
        );
        assert_eq!(
            yolo_path(Path::new("out"), Path::new("d/a.b.png")),
            Path::new("out/a.b.txt")
        );
    }
}
