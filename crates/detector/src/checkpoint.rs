//! Ultralytics checkpoints as they are: a `torch.save` zip whose pickle is a dict (`model`,
//! `ema`, `train_args`, ...) holding a pickled `DetectionModel` object, weights in fp16.
//!
//! The pickle is run by the bounded reader of [`mobilesam_checkpoint::pickle`], which executes
//! nothing: module objects come back as class names with their `__dict__` as data. This
//! file walks that data: `_parameters`, `_buffers` and `_modules` by name, a few plain
//! attributes (ints, floats, bools, tuples), the `yaml` dict and `names`. Everything else
//! stays opaque.

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::Tensor;

use mobilesam_checkpoint::pickle::{read_value, Object, TensorRef, Value, MAX_DEPTH};
use mobilesam_checkpoint::torch::{read_entry, tensor_from_storage};

/// One `nn.Module` of the pickled tree: its class, plain attributes, tensors and children.
#[derive(Debug, Clone)]
pub struct ModuleNode {
    /// The class name, e.g. `Conv`, `C2f`, `Detect`.
    pub class: String,
    /// The class's Python module, e.g. `ultralytics.nn.modules.conv`.
    pub python_module: String,
    /// `__dict__` entries other than `_parameters`, `_buffers` and `_modules`.
    attrs: HashMap<String, Value>,
    /// Parameters and buffers by local name (`weight`, `running_mean`, ...); `None` entries
    /// (a conv without bias) are left out.
    tensors: Vec<(String, TensorRef)>,
    /// Child modules in registration order (`None` children are left out).
    pub children: Vec<(String, ModuleNode)>,
}

impl ModuleNode {
    /// The child `name`, or an error naming the class and the missing child.
    pub fn child(&self, name: &str) -> Result<&ModuleNode, String> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| format!("{} has no submodule `{name}`", self.class))
    }

    /// The child `name` when present.
    pub fn maybe_child(&self, name: &str) -> Option<&ModuleNode> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    /// An integer attribute (a bool reads as 0/1).
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.attrs.get(name)? {
            Value::Int(v) => Some(*v),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A float attribute (an int reads as its value).
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.attrs.get(name)? {
            Value::Float(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// A bool attribute.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.attrs.get(name)? {
            Value::Bool(b) => Some(*b),
            Value::Int(v) => Some(*v != 0),
            _ => None,
        }
    }

    /// A string attribute.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An attribute that is an int or a tuple of ints (e.g. `stride`, `padding`).
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        int_list(self.attrs.get(name)?)
    }

    /// Names of this module's tensors, local.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }
}

/// An Ultralytics detection checkpoint: the module tree, its tensors (as float32 on the
/// host, by dotted state_dict name) and the architecture.
#[derive(Debug)]
pub struct UltralyticsCheckpoint {
    /// The `DetectionModel` object.
    pub model: ModuleNode,
    /// Every tensor of the model by its state_dict name (`model.0.conv.weight`, ...).
    pub tensors: HashMap<String, Tensor>,
    /// The architecture: the layers of `yaml["backbone"] + yaml["head"]`.
    pub layers: Vec<YamlLayer>,
    /// `yaml["scale"]` (`n`, `s`, ...), when recorded.
    pub scale: Option<String>,
    /// Class names by id (`model.names`; numbers when the checkpoint has none).
    pub names: Vec<String>,
}

/// One line of the architecture: `[from, repeats, module, args]`.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlLayer {
    /// Inputs: `-1` is the previous layer, others absolute layer indices.
    pub from: Vec<i64>,
    /// The module's name, e.g. `Conv`, `nn.Upsample`.
    pub module: String,
}

/// Model classes of other Ultralytics tasks, and what each is called in errors.
const OTHER_TASKS: [(&str, &str); 8] = [
    ("SegmentationModel", "segment"),
    ("PoseModel", "pose"),
    ("OBBModel", "obb"),
    ("ClassificationModel", "classify"),
    ("RTDETRDetectionModel", "RT-DETR"),
    ("WorldModel", "YOLO-World"),
    ("YOLOEModel", "YOLOE"),
    ("YOLOESegModel", "YOLOE-seg"),
];

/// Reads an Ultralytics checkpoint held in memory. Malformed or hostile input, a checkpoint
/// of another task, or a missing tensor give an error, never a panic; no allocation exceeds
/// the file's size.
pub fn read_ultralytics(bytes: &[u8]) -> Result<UltralyticsCheckpoint, String> {
    let limit = bytes.len() as u64;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a torch.save zip: {e}"))?;
    let pickle_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).and_then(|name| name.ok()))
        .map(|name| name.to_string())
        .find(|name| name.ends_with("data.pkl"))
        .ok_or("the zip has no data.pkl (not a torch.save file)")?;
    let archive = pickle_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    let pickle = read_entry(&mut zip, &pickle_name, limit)?;
    let parsed = read_model_pickle(&pickle).map_err(|e| format!("{pickle_name}: {e}"))?;
    let ParsedModel {
        model,
        layers,
        scale,
        names,
    } = parsed;
    let mut refs = Vec::new();
    collect_tensors(&model, "", &mut refs);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = HashMap::with_capacity(refs.len());
    for (name, info) in refs {
        let entry = format!("{archive}data/{}", info.storage_key);
        if !storages.contains_key(&entry) {
            let data =
                read_entry(&mut zip, &entry, limit).map_err(|e| format!("tensor `{name}`: {e}"))?;
            storages.insert(entry.clone(), data);
        }
        let tensor = tensor_from_storage(&storages[&entry], &info, limit)
            .and_then(|t| {
                t.to_dtype(candle_core::DType::F32)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        tensors.insert(name, tensor);
    }
    Ok(UltralyticsCheckpoint {
        model,
        tensors,
        layers,
        scale,
        names,
    })
}

/// What the pickle of an Ultralytics checkpoint says, before any tensor data is read.
#[derive(Debug)]
pub struct ParsedModel {
    /// The `DetectionModel` object.
    pub model: ModuleNode,
    /// The architecture.
    pub layers: Vec<YamlLayer>,
    /// `yaml["scale"]`.
    pub scale: Option<String>,
    /// Class names by id.
    pub names: Vec<String>,
}

/// Runs the pickle of a checkpoint (`data.pkl`) with the bounded reader and walks the
/// model object in it: the module tree, the architecture and the class names. Executes
/// nothing; malformed input gives an error. This is the fuzz target's entry point.
pub fn read_model_pickle(pickle: &[u8]) -> Result<ParsedModel, String> {
    let root = read_value(pickle)?;
    let model_object = pick_model(&root)?;
    check_task(model_object)?;
    let model = walk(model_object, 0)?;
    let yaml = model_object_attr(model_object, "yaml")
        .ok_or("the model has no `yaml` (architecture) attribute")?;
    let layers = yaml_layers(yaml)?;
    let scale = dict_get(yaml, "scale").and_then(|v| match v {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    });
    let names = class_names(model_object_attr(model_object, "names"), yaml)?;
    Ok(ParsedModel {
        model,
        layers,
        scale,
        names,
    })
}

/// `ckpt.get("ema") or ckpt["model"]`, as Ultralytics loads it; a bare pickled model is
/// accepted too.
fn pick_model(root: &Value) -> Result<&Object, String> {
    match root {
        Value::Object(object) => Ok(&**object),
        Value::Dict(..) => {
            for key in ["ema", "model"] {
                if let Some(Value::Object(object)) = dict_get(root, key) {
                    return Ok(&**object);
                }
            }
            if dict_get(root, "model").is_some() {
                return Err("the checkpoint's `model` is not a pickled module".into());
            }
            Err(
                "the checkpoint has no `model` entry (expected an Ultralytics checkpoint; \
                 a plain state_dict lacks the architecture)"
                    .into(),
            )
        }
        _ => Err("the pickle is neither an Ultralytics checkpoint dict nor a model".into()),
    }
}

/// Only detection models are supported; other tasks are named.
fn check_task(model: &Object) -> Result<(), String> {
    if let Some((_, task)) = OTHER_TASKS.iter().find(|(class, _)| *class == model.name) {
        return Err(format!(
            "the checkpoint is a {task} model ({}); only detection models (DetectionModel) are supported",
            model.name
        ));
    }
    if model.name != "DetectionModel" {
        return Err(format!(
            "the checkpoint's model is a {}.{}, not an Ultralytics DetectionModel",
            model.module, model.name
        ));
    }
    Ok(())
}

/// An attribute of a pickled object's `__dict__`.
fn model_object_attr<'a>(object: &'a Object, name: &str) -> Option<&'a Value> {
    state_dict(&object.state).and_then(|state| dict_get(state, name))
}

/// The `__dict__` of an object's state: the state itself, or the first item of a
/// `(dict, slots)` tuple.
fn state_dict(state: &Value) -> Option<&Value> {
    match state {
        Value::Dict(..) => Some(state),
        Value::Tuple(items, _) => items.first().filter(|v| matches!(v, Value::Dict(..))),
        _ => None,
    }
}

/// `dict[key]` for a string key.
fn dict_get<'a>(dict: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Dict(items, _) = dict else {
        return None;
    };
    items.iter().rev().find_map(|(k, v)| match k {
        Value::Str(s) if s == key => Some(v),
        _ => None,
    })
}

/// An int, or a tuple/list of ints.
fn int_list(value: &Value) -> Option<Vec<i64>> {
    match value {
        Value::Int(v) => Some(vec![*v]),
        Value::Tuple(items, _) | Value::List(items, _) => items
            .iter()
            .map(|v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Builds the module tree of a pickled `nn.Module`.
fn walk(object: &Object, depth: u32) -> Result<ModuleNode, String> {
    if depth > MAX_DEPTH {
        return Err(format!("modules nest deeper than {MAX_DEPTH} levels"));
    }
    let empty = Vec::new();
    let items = match (&object.state, state_dict(&object.state)) {
        (_, Some(Value::Dict(items, _))) => items,
        // A module pickled earlier and referenced again (Conv's shared `act`) comes back
        // from the memo as it was before its state was built: its class is all there is.
        (Value::None, _) => &empty,
        _ => {
            return Err(format!(
                "module {} has no attribute dict (not a pickled nn.Module)",
                object.name
            ))
        }
    };
    let mut node = ModuleNode {
        class: object.name.clone(),
        python_module: object.module.clone(),
        attrs: HashMap::new(),
        tensors: Vec::new(),
        children: Vec::new(),
    };
    for (key, value) in items {
        let Value::Str(key) = key else { continue };
        match key.as_str() {
            "_parameters" | "_buffers" => {
                for (name, v) in string_items(value) {
                    match v {
                        Value::Tensor(t) => node.tensors.push((name.to_string(), t.clone())),
                        Value::None => {}
                        _ => {
                            return Err(format!("{}.{key}[{name:?}] is not a tensor", object.name))
                        }
                    }
                }
            }
            "_modules" => {
                for (name, v) in string_items(value) {
                    match v {
                        Value::Object(child) => {
                            let child =
                                walk(child, depth + 1).map_err(|e| format!("{name}: {e}"))?;
                            node.children.push((name.to_string(), child));
                        }
                        Value::None => {}
                        _ => {
                            return Err(format!(
                                "{}._modules[{name:?}] is not a module",
                                object.name
                            ))
                        }
                    }
                }
            }
            _ => {
                if matches!(
                    value,
                    Value::Int(_)
                        | Value::Float(_)
                        | Value::Bool(_)
                        | Value::Str(_)
                        | Value::Tuple(..)
                        | Value::List(..)
                ) {
                    node.attrs.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Ok(node)
}

/// The string-keyed entries of a dict (others skipped); empty for a non-dict.
fn string_items(value: &Value) -> Vec<(&str, &Value)> {
    match value {
        Value::Dict(items, _) => items
            .iter()
            .filter_map(|(k, v)| match k {
                Value::Str(s) => Some((s.as_str(), v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Every tensor of the tree with its dotted name.
fn collect_tensors(node: &ModuleNode, prefix: &str, out: &mut Vec<(String, TensorRef)>) {
    for (name, t) in &node.tensors {
        out.push((format!("{prefix}{name}"), t.clone()));
    }
    for (name, child) in &node.children {
        collect_tensors(child, &format!("{prefix}{name}."), out);
    }
}

/// `yaml["backbone"] + yaml["head"]` as layers.
fn yaml_layers(yaml: &Value) -> Result<Vec<YamlLayer>, String> {
    let mut layers = Vec::new();
    for part in ["backbone", "head"] {
        let Some(Value::List(lines, _)) = dict_get(yaml, part) else {
            return Err(format!("the model's yaml has no `{part}` list"));
        };
        for line in lines {
            let (Value::List(fields, _) | Value::Tuple(fields, _)) = line else {
                return Err(format!("a `{part}` entry is not a list"));
            };
            let (Some(from), Some(Value::Str(module))) = (fields.first(), fields.get(2)) else {
                return Err(format!(
                    "a `{part}` entry is not [from, repeats, module, args]"
                ));
            };
            let from = int_list(from).ok_or_else(|| format!("`{module}`: bad `from` field"))?;
            layers.push(YamlLayer {
                from,
                module: module.clone(),
            });
        }
    }
    Ok(layers)
}

/// Class names by id from `model.names` (a dict of id -> name, or a list), else
/// `yaml["names"]`, else numbers up to `yaml["nc"]`.
fn class_names(names: Option<&Value>, yaml: &Value) -> Result<Vec<String>, String> {
    let source = names.or_else(|| dict_get(yaml, "names"));
    let mut by_id: Vec<(i64, String)> = match source {
        Some(Value::Dict(items, _)) => items
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Int(id), Value::Str(name)) => Some((*id, name.clone())),
                _ => None,
            })
            .collect(),
        Some(Value::List(items, _)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Value::Str(name) => Some((i as i64, name.clone())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    by_id.sort_by_key(|(id, _)| *id);
    if !by_id.is_empty() {
        if by_id.iter().enumerate().any(|(i, (id, _))| *id != i as i64) {
            return Err("the checkpoint's class names are not numbered 0, 1, 2, ...".into());
        }
        return Ok(by_id.into_iter().map(|(_, n)| n).collect());
    }
    match dict_get(yaml, "nc") {
        Some(Value::Int(nc)) if (1..=100_000).contains(nc) => {
            Ok((0..*nc).map(|i| i.to_string()).collect())
        }
        _ => Err("the checkpoint has neither class names nor a class count".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{'model': <module>.<class>()}` with an empty `__dict__`, as protocol 2 pickles it.
    fn checkpoint_of(module: &str, class: &str) -> Vec<u8> {
        let mut p = b"\x80\x02}X\x05\x00\x00\x00model".to_vec();
        p.extend(format!("c{module}\n{class}\n").bytes());
        p.extend(b")\x81}bs.");
        p
    }

    #[test]
    fn other_tasks_are_named() {
        let err = read_model_pickle(&checkpoint_of("ultralytics.nn.tasks", "SegmentationModel"))
            .unwrap_err();
        assert!(err.contains("segment model (SegmentationModel)"), "{err}");
        let err =
            read_model_pickle(&checkpoint_of("ultralytics.nn.tasks", "PoseModel")).unwrap_err();
        assert!(err.contains("pose model"), "{err}");
        let err = read_model_pickle(&checkpoint_of("torch.nn", "Linear")).unwrap_err();
        assert!(err.contains("not an Ultralytics DetectionModel"), "{err}");
    }

    #[test]
    fn a_model_without_architecture_is_refused() {
        let err = read_model_pickle(&checkpoint_of("ultralytics.nn.tasks", "DetectionModel"))
            .unwrap_err();
        assert!(err.contains("no `yaml`"), "{err}");
    }
}
