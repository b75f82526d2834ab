//! [`HieraConfig`]: SAM 2.1's hyperparameters, read from a checkpoint's shapes where the
//! shapes tell them (widths, stage depths, background position-embedding size, the first
//! window) and from the table of the official sizes where they do not (heads, the
//! global-attention blocks, later windows): see `tests/fixtures/sam2/README.md`.

use crate::error::{ModelError, Result};

/// The named sizes of SAM 2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HieraSize {
    /// Hiera-T (`sam2.1_hiera_tiny.pt`, Ultralytics `sam2.1_t.pt`).
    Tiny,
    /// Hiera-S.
    Small,
    /// Hiera-B+.
    BasePlus,
    /// Hiera-L.
    Large,
    /// The reduced test model of `tests/fixtures/sam2` (width 16, stages 1, 2, 3, 1).
    Reduced,
}

impl HieraSize {
    /// The name the API reports (`ModelInfo.family`).
    pub fn name(self) -> &'static str {
        match self {
            HieraSize::Tiny => "sam2.1_hiera_t",
            HieraSize::Small => "sam2.1_hiera_s",
            HieraSize::BasePlus => "sam2.1_hiera_b+",
            HieraSize::Large => "sam2.1_hiera_l",
            HieraSize::Reduced => "sam2.1_hiera",
        }
    }
}

/// One row of the table of known sizes: what the shapes cannot tell.
struct KnownSize {
    size: HieraSize,
    width: usize,
    stages: [usize; 4],
    heads: usize,
    global_blocks: &'static [usize],
    window_spec: [usize; 4],
}

/// `configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml` and the reduced fixture.
const KNOWN_SIZES: [KnownSize; 5] = [
    KnownSize {
        size: HieraSize::Tiny,
        width: 96,
        stages: [1, 2, 7, 2],
        heads: 1,
        global_blocks: &[5, 7, 9],
        window_spec: [8, 4, 14, 7],
    },
    KnownSize {
        size: HieraSize::Small,
        width: 96,
        stages: [1, 2, 11, 2],
        heads: 1,
        global_blocks: &[7, 10, 13],
        window_spec: [8, 4, 14, 7],
    },
    KnownSize {
        size: HieraSize::BasePlus,
        width: 112,
        stages: [2, 3, 16, 3],
        heads: 2,
        global_blocks: &[12, 16, 20],
        window_spec: [8, 4, 14, 7],
    },
    KnownSize {
        size: HieraSize::Large,
        width: 144,
        stages: [2, 6, 36, 4],
        heads: 2,
        global_blocks: &[23, 33, 43],
        window_spec: [8, 4, 16, 8],
    },
    KnownSize {
        size: HieraSize::Reduced,
        width: 16,
        stages: [1, 2, 3, 1],
        heads: 1,
        global_blocks: &[4],
        window_spec: [8, 4, 14, 7],
    },
];

/// SAM 2.1's image-path hyperparameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HieraConfig {
    /// Named size.
    pub size: HieraSize,
    /// Width of the first stage (doubles at each stage).
    pub width: usize,
    /// Blocks per stage.
    pub stages: [usize; 4],
    /// Heads of the first stage (double at each stage).
    pub heads: usize,
    /// Blocks that attend globally; the others attend in windows.
    pub global_blocks: Vec<usize>,
    /// Window side per stage.
    pub window_spec: [usize; 4],
    /// (height, width) of the background position embedding (`pos_embed`).
    pub pos_embed_size: (usize, usize),
    /// Width of the FPN neck, the prompt encoder and the decoder.
    pub neck_dim: usize,
}

impl HieraConfig {
    /// Reads the configuration from tensor `names` and a shape look-up.
    pub fn detect(names: &[&str], shape: &impl Fn(&str) -> Option<Vec<usize>>) -> Result<Self> {
        let bad = |what: String| {
            Err(ModelError::UnsupportedCheckpoint(format!(
                "SAM 2.1 checkpoint: {what}"
            )))
        };
        let trunk = "image_encoder.trunk";
        let patch = format!("{trunk}.patch_embed.proj.weight");
        let width = match shape(&patch) {
            Some(s) if s.len() == 4 && s[1..] == [3, 7, 7] && s[0] > 0 => s[0],
            Some(s) => return bad(format!("`{patch}` has shape {s:?}, expected [C, 3, 7, 7]")),
            None => return bad(format!("no `{patch}`")),
        };
        let depth = (0..)
            .take_while(|i| {
                let name = format!("{trunk}.blocks.{i}.attn.qkv.weight");
                names.contains(&name.as_str())
            })
            .count();
        // A stage starts at block 0 and at each block that changes width (`proj`).
        let starts: Vec<usize> = (0..depth)
            .filter(|i| {
                *i == 0 || names.contains(&format!("{trunk}.blocks.{i}.proj.weight").as_str())
            })
            .collect();
        if starts.len() != 4 {
            return bad(format!(
                "{depth} blocks in {} stages (stages start at blocks {starts:?}), expected 4",
                starts.len()
            ));
        }
        let mut stages = [0usize; 4];
        for (k, start) in starts.iter().enumerate() {
            stages[k] = starts.get(k + 1).copied().unwrap_or(depth) - start;
        }
        let pos = format!("{trunk}.pos_embed");
        let pos_embed_size = match shape(&pos) {
            Some(s) if s.len() == 4 && s[..2] == [1, width] => (s[2], s[3]),
            Some(s) => {
                return bad(format!(
                    "`{pos}` has shape {s:?}, expected [1, {width}, h, w]"
                ))
            }
            None => return bad(format!("no `{pos}`")),
        };
        let neck = "image_encoder.neck.convs.0.conv.weight";
        let neck_dim = match shape(neck) {
            Some(s) if s.len() == 4 && s[1] == 8 * width => s[0],
            Some(s) => {
                return bad(format!(
                    "`{neck}` has shape {s:?}, expected [D, {}, 1, 1]",
                    8 * width
                ))
            }
            None => return bad(format!("no `{neck}`")),
        };
        let Some(known) = KNOWN_SIZES
            .iter()
            .find(|k| k.width == width && k.stages == stages)
        else {
            let list: Vec<String> = KNOWN_SIZES
                .iter()
                .map(|k| {
                    format!(
                        "{} (width {}, stages {:?})",
                        k.size.name(),
                        k.width,
                        k.stages
                    )
                })
                .collect();
            return bad(format!(
                "a Hiera trunk of width {width} with stages {stages:?} is not a known size \
                 (its heads and global-attention blocks are not in the checkpoint); known: {}",
                list.join(", ")
            ));
        };
        let window = format!("{trunk}.pos_embed_window");
        let w0 = known.window_spec[0];
        match shape(&window) {
            Some(s) if s == [1, width, w0, w0] => {}
            other => {
                return bad(format!(
                    "`{window}` has shape {other:?}, expected [1, {width}, {w0}, {w0}]"
                ))
            }
        }
        Ok(Self {
            size: known.size,
            width,
            stages,
            heads: known.heads,
            global_blocks: known.global_blocks.to_vec(),
            window_spec: known.window_spec,
            pos_embed_size,
            neck_dim,
        })
    }

    /// Total number of blocks.
    pub fn depth(&self) -> usize {
        self.stages.iter().sum()
    }

    /// `(stage, first block of its stage)` of block `i`.
    pub fn stage_of(&self, block: usize) -> (usize, bool) {
        let mut start = 0;
        for (k, n) in self.stages.iter().enumerate() {
            if block < start + n {
                return (k, block == start);
            }
            start += n;
        }
        (3, false)
    }

    /// A human-readable description.
    pub fn describe(&self) -> String {
        let name = match self.size {
            HieraSize::Tiny => "Hiera-T",
            HieraSize::Small => "Hiera-S",
            HieraSize::BasePlus => "Hiera-B+",
            HieraSize::Large => "Hiera-L",
            HieraSize::Reduced => "Hiera (reduced test size)",
        };
        format!(
            "SAM 2.1 {name} (width {}, stages {:?}, {} heads, global attention in blocks {:?}, neck width {})",
            self.width, self.stages, self.heads, self.global_blocks, self.neck_dim
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn hiera(width: usize, stages: [usize; 4], neck: usize) -> Vec<(String, Vec<usize>)> {
        let t = "image_encoder.trunk";
        let mut v = vec![
            (format!("{t}.patch_embed.proj.weight"), vec![width, 3, 7, 7]),
            (format!("{t}.pos_embed"), vec![1, width, 7, 7]),
            (format!("{t}.pos_embed_window"), vec![1, width, 8, 8]),
            (
                "image_encoder.neck.convs.0.conv.weight".into(),
                vec![neck, 8 * width, 1, 1],
            ),
        ];
        let mut block = 0;
        for (k, n) in stages.iter().enumerate() {
            for j in 0..*n {
                let c = width << k;
                v.push((
                    format!("{t}.blocks.{block}.attn.qkv.weight"),
                    vec![3 * c, c],
                ));
                if k > 0 && j == 0 {
                    v.push((format!("{t}.blocks.{block}.proj.weight"), vec![c, c / 2]));
                }
                block += 1;
            }
        }
        v
    }

    fn detect(t: &[(String, Vec<usize>)]) -> Result<HieraConfig> {
        let map: HashMap<&str, Vec<usize>> =
            t.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        HieraConfig::detect(&names, &|n| map.get(n).cloned())
    }

    #[test]
    fn the_tiny_size_is_read_and_named() {
        let c = detect(&hiera(96, [1, 2, 7, 2], 256)).expect("detected");
        assert_eq!(c.size, HieraSize::Tiny);
        assert_eq!(c.size.name(), "sam2.1_hiera_t");
        assert_eq!((c.depth(), c.heads, c.neck_dim), (12, 1, 256));
        assert_eq!(c.global_blocks, vec![5, 7, 9]);
        assert_eq!(c.stage_of(3), (2, true));
        assert_eq!(c.stage_of(4), (2, false));
        assert_eq!(c.stage_of(11), (3, false));
    }

    #[test]
    fn an_unknown_size_names_what_was_found() {
        let err = detect(&hiera(64, [1, 1, 2, 1], 128)).map_err(|e| e.to_string());
        let Err(message) = err else {
            panic!("accepted")
        };
        assert!(
            message.contains("width 64 with stages [1, 1, 2, 1] is not a known size")
                && message.contains("sam2.1_hiera_t (width 96, stages [1, 2, 7, 2])"),
            "{message}"
        );
    }
}
