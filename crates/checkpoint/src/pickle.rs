//! A bounded reader for the pickle inside a `torch.save` zip: just enough of the pickle
//! virtual machine to find the tensors of a `state_dict` (a dict, or an `OrderedDict`, of
//! names to `torch._utils._rebuild_tensor_v2(...)` calls on persistent storages).
//!
//! Hostile input gives an error, never a panic or a large allocation: every length is
//! checked against the bytes that remain, nesting is capped at [`MAX_DEPTH`], and the
//! values built (memo copies included) are capped by [`node_budget`], proportional to the
//! pickle's size.

use std::collections::HashMap;

use candle_core::DType;

/// Deepest nesting of tuples, lists and dicts accepted (a state_dict needs 4).
pub const MAX_DEPTH: u32 = 64;

/// One tensor of the state_dict: where its values lie and how they are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    /// The state_dict key.
    pub name: String,
    /// Element type of the storage.
    pub dtype: DType,
    /// The storage's key: its values are the zip entry `<archive>/data/<key>`.
    pub storage_key: String,
    /// Offset of the first element in the storage, in elements.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements, one per dimension.
    pub stride: Vec<usize>,
}

/// A pickled value, as far as a state_dict or a pickled module tree needs one.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes,
    /// A container with its nesting depth.
    Tuple(Vec<Value>, u32),
    List(Vec<Value>, u32),
    Dict(Vec<(Value, Value)>, u32),
    Global(String, String),
    /// `callable(*args)` for a callable that is not understood; kept opaque.
    Opaque,
    /// A persistent id: `('storage', StorageClass, key, location, numel)` in torch.
    Persistent(Box<Value>),
    Tensor(TensorRef),
    /// An instance of a class that is not understood (`cls.__new__(cls)` through NEWOBJ or
    /// REDUCE), with the state its BUILD gave it (`None` until then). Nothing is executed:
    /// the state is kept as data, for the module walker to read `__dict__` entries from.
    Object(Box<Object>),
}

/// An instance: its class and its pickled state (usually its `__dict__`).
#[derive(Debug, Clone)]
pub struct Object {
    /// The class's module, e.g. `ultralytics.nn.modules.conv`.
    pub module: String,
    /// The class's name, e.g. `Conv`.
    pub name: String,
    /// The state given by BUILD; `Value::None` when there was none.
    pub state: Value,
}

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(_, d) | Value::List(_, d) | Value::Dict(_, d) => *d,
            Value::Persistent(inner) => inner.depth() + 1,
            Value::Object(object) => object.state.depth() + 1,
            _ => 0,
        }
    }

    /// Nodes and string bytes this value holds, the cost of copying it.
    fn weight(&self) -> usize {
        match self {
            Value::Str(s) => 1 + s.len() / 16,
            Value::Tuple(items, _) | Value::List(items, _) => {
                1 + items.iter().map(Value::weight).sum::<usize>()
            }
            Value::Dict(items, _) => {
                1 + items
                    .iter()
                    .map(|(k, v)| k.weight() + v.weight())
                    .sum::<usize>()
            }
            Value::Persistent(inner) => 1 + inner.weight(),
            Value::Global(a, b) => 1 + (a.len() + b.len()) / 16,
            Value::Tensor(t) => 1 + t.shape.len() + t.name.len() / 16,
            Value::Object(o) => 1 + (o.module.len() + o.name.len()) / 16 + o.state.weight(),
            _ => 1,
        }
    }
}

/// An entry of the VM stack: a value or a MARK.
#[derive(Debug)]
enum Slot {
    Mark,
    Value(Value),
}

/// How many value nodes a pickle of `len` bytes may build, copies from the memo included.
pub fn node_budget(len: usize) -> usize {
    len.saturating_mul(8).saturating_add(4096)
}

/// Runs the pickle `bytes` and returns the tensors of the state_dict it builds, in
/// order. Entries whose value is not a tensor are skipped; a result that is not a dict,
/// or any malformed opcode, is an error.
///
/// A training checkpoint that wraps the state_dict (`{"model": state_dict, ...}`, as SAM 2's
/// official files are saved, or `{"state_dict": ...}`) is unwrapped; the `module.` prefix
/// that `DataParallel` adds to every key is removed.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<TensorRef>, String> {
    let result = read_value(bytes)?;
    let Value::Dict(items, _) = result else {
        return Err("the pickle is not a state_dict (expected a dict of tensors)".into());
    };
    let items = unwrap_container(items);
    let mut tensors: Vec<TensorRef> = items
        .into_iter()
        .filter_map(|(key, value)| match (key, value) {
            (Value::Str(name), Value::Tensor(mut tensor)) => {
                tensor.name = name;
                Some(tensor)
            }
            _ => None,
        })
        .collect();
    if !tensors.is_empty() && tensors.iter().all(|t| t.name.starts_with("module.")) {
        for tensor in &mut tensors {
            tensor.name.drain(.."module.".len());
        }
    }
    Ok(tensors)
}

/// Keys under which training checkpoints keep the state_dict.
const CONTAINER_KEYS: [&str; 2] = ["model", "state_dict"];

/// The state_dict inside a training checkpoint's dict (a dict of no tensors with a
/// [`CONTAINER_KEYS`] entry that is a dict), or `items` themselves.
fn unwrap_container(items: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    let holds_tensors = items
        .iter()
        .any(|(_, value)| matches!(value, Value::Tensor(_)));
    if holds_tensors {
        return items;
    }
    let position = items.iter().position(|(key, value)| {
        matches!((key, value), (Value::Str(k), Value::Dict(..)) if CONTAINER_KEYS.contains(&k.as_str()))
    });
    match position {
        Some(i) => match items.into_iter().nth(i) {
            Some((_, Value::Dict(inner, _))) => inner,
            _ => Vec::new(),
        },
        None => items,
    }
}

/// Runs the pickle `bytes` and returns the value it builds, with the same bounds as
/// [`read_state_dict`]. Instances of unknown classes come back as [`Value::Object`] with
/// their state as data; nothing in the pickle is ever called.
pub fn read_value(bytes: &[u8]) -> Result<Value, String> {
    let mut vm = Vm {
        input: bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        budget: node_budget(bytes.len()),
    };
    vm.run()
}

struct Vm<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
    budget: usize,
}

impl Vm<'_> {
    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            if op == b'.' {
                return self.pop().map_err(|e| format!("STOP: {e}"));
            }
            self.step(op)
                .map_err(|e| format!("pickle opcode {op:#04x} at byte {at}: {e}"))?;
        }
    }

    fn step(&mut self, op: u8) -> Result<(), String> {
        match op {
            0x80 => drop(self.byte()?),          // PROTO
            0x95 => drop(self.take(8)?),         // FRAME
            b'(' => self.stack.push(Slot::Mark), // MARK
            b'N' => self.push(Value::None)?,
            0x88 => self.push(Value::Bool(true))?,  // NEWTRUE
            0x89 => self.push(Value::Bool(false))?, // NEWFALSE
            b'K' => {
                let v = self.byte()?;
                self.push(Value::Int(v.into()))?
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(v.into()))?
            }
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(v.into()))?
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = usize::from(self.byte()?);
                let bytes = self.take(n)?;
                if n > 8 {
                    return Err(format!("a {n}-byte integer does not fit in 64 bits"));
                }
                let mut buf = [0u8; 8];
                buf[..n].copy_from_slice(bytes);
                if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                    buf[n..].fill(0xff);
                }
                self.push(Value::Int(i64::from_le_bytes(buf)))?
            }
            b'G' => {
                // BINFLOAT: big-endian IEEE 754 double.
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v))?
            }
            b'X' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                self.string(n)?
            }
            0x8c => {
                let n = usize::from(self.byte()?);
                self.string(n)?
            }
            0x8d => {
                let n = usize::try_from(u64::from_le_bytes(self.array()?))
                    .map_err(|_| "string length overflows".to_string())?;
                self.string(n)?
            }
            b'B' | b'C' => {
                let n = if op == b'B' {
                    u32::from_le_bytes(self.array()?) as usize
                } else {
                    usize::from(self.byte()?)
                };
                self.take(n)?;
                self.push(Value::Bytes)?
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global(module, name))?
            }
            0x93 => {
                // STACK_GLOBAL
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n))?,
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'}' => self.push(Value::Dict(Vec::new(), 1))?,
            b']' => self.push(Value::List(Vec::new(), 1))?,
            b')' => self.push(Value::Tuple(Vec::new(), 1))?,
            b't' => {
                let items = self.pop_to_mark()?;
                self.push(tuple(items))?
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(tuple(items))?
            }
            b'l' => {
                let items = self.pop_to_mark()?;
                let depth = depth_of(&items);
                self.push(Value::List(items, depth))?
            }
            b'a' => {
                let item = self.pop()?;
                self.extend_list(vec![item])?
            }
            b'e' => {
                let items = self.pop_to_mark()?;
                self.extend_list(items)?
            }
            b'd' => {
                let items = self.pop_to_mark()?;
                let dict = Value::Dict(Vec::new(), 1);
                self.push(dict)?;
                self.set_items(items)?
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?
            }
            b'u' => {
                let items = self.pop_to_mark()?;
                self.set_items(items)?
            }
            b'q' => {
                let key = self.byte()?;
                self.memoize(key.into())?
            }
            b'r' => {
                let key = u32::from_le_bytes(self.array()?);
                self.memoize(key)?
            }
            0x94 => {
                let key = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.memoize(key)?
            }
            b'h' => {
                let key = self.byte()?;
                self.recall(key.into())?
            }
            b'j' => {
                let key = u32::from_le_bytes(self.array()?);
                self.recall(key)?
            }
            b'Q' => {
                // BINPERSID
                let id = self.pop()?;
                self.push(Value::Persistent(Box::new(id)))?
            }
            b'R' | 0x81 => {
                // REDUCE, NEWOBJ: callable(*args)
                let args = self.pop()?;
                let callable = self.pop()?;
                let value = call(callable, args)?;
                self.push(value)?
            }
            b'b' => {
                // BUILD: an instance keeps its state as data; any other value (an
                // OrderedDict's `_metadata`, a tensor's hooks) drops it.
                let state = self.pop()?;
                let added = state.depth() + 1;
                if let Value::Object(object) = self.top()? {
                    if matches!(object.state, Value::None) {
                        if added > MAX_DEPTH {
                            return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
                        }
                        object.state = state;
                    }
                }
            }
            b'0' => drop(self.pop()?), // POP
            _ => return Err("unsupported opcode".into()),
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// The next `n` bytes; checked against what remains, so no length allocates more than
    /// the input holds.
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let rest = &self.input[self.pos..];
        if n > rest.len() {
            return Err(format!(
                "needs {n} bytes, {} remain (truncated pickle)",
                rest.len()
            ));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn string(&mut self, n: usize) -> Result<(), String> {
        let bytes = self.take(n)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|e| format!("string is not UTF-8: {e}"))?
            .to_string();
        self.push(Value::Str(text))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.input[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated line")?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|e| format!("line is not UTF-8: {e}"))?
            .to_string();
        self.pos += end + 1;
        Ok(text)
    }

    fn charge(&mut self, weight: usize) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(weight)
            .ok_or("the pickle builds more values than its size allows")?;
        Ok(())
    }

    fn push(&mut self, value: Value) -> Result<(), String> {
        self.charge(1)?;
        if value.depth() > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(Slot::Value(value));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err("found a MARK where a value was expected".into()),
            None => Err("the stack is empty".into()),
        }
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err("found a MARK where a value was expected".into()),
            None => Err("the stack is empty".into()),
        }
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or("no MARK on the stack")?;
        let items = self
            .stack
            .drain(mark + 1..)
            .map(|slot| match slot {
                Slot::Value(v) => v,
                Slot::Mark => Value::None,
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), String> {
        let added = depth_of(&items);
        let Value::List(list, depth) = self.top()? else {
            return Err("APPEND to something that is not a list".into());
        };
        list.extend(items);
        *depth = (*depth).max(added);
        if *depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let added = depth_of(&items);
        let Value::Dict(dict, depth) = self.top()? else {
            return Err("SETITEM on something that is not a dict".into());
        };
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.push((k, v));
        }
        *depth = (*depth).max(added);
        if *depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn memoize(&mut self, key: u32) -> Result<(), String> {
        let weight = self.top()?.weight();
        self.charge(weight)?;
        let value = self.top()?.clone();
        self.memo.insert(key, value);
        Ok(())
    }

    fn recall(&mut self, key: u32) -> Result<(), String> {
        let weight = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo key {key} was never stored"))?
            .weight();
        // Charged before the copy is made, so an over-budget copy is never allocated.
        self.charge(weight)?;
        let value = self.memo[&key].clone();
        self.push(value)
    }
}

/// The depth of a container holding `items`.
fn depth_of(items: &[Value]) -> u32 {
    1 + items.iter().map(Value::depth).max().unwrap_or(0)
}

fn tuple(items: Vec<Value>) -> Value {
    let depth = depth_of(&items);
    Value::Tuple(items, depth)
}

/// `callable(*args)` for the callables a state_dict uses; a class called through NEWOBJ
/// (or `copyreg._reconstructor`) becomes an [`Object`] awaiting its BUILD state; anything
/// else is opaque.
fn call(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Opaque);
    };
    if (module.as_str(), name.as_str()) == ("copyreg", "_reconstructor") {
        // `_reconstructor(cls, base, state)`: an instance of `cls`.
        if let Value::Tuple(items, _) = &args {
            if let Some(Value::Global(m, n)) = items.first() {
                return Ok(instance(m, n));
            }
        }
        return Ok(Value::Opaque);
    }
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new(), 1)),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            rebuild_tensor(args).map(Value::Tensor)
        }
        ("torch._utils", "_rebuild_parameter") => match args {
            Value::Tuple(mut items, _) if !items.is_empty() => Ok(items.swap_remove(0)),
            _ => Err("_rebuild_parameter needs (tensor, ...)".into()),
        },
        ("builtins", "set" | "frozenset") | ("torch", "device" | "Size") => Ok(Value::Opaque),
        (m, n) => Ok(instance(m, n)),
    }
}

fn instance(module: &str, name: &str) -> Value {
    Value::Object(Box::new(Object {
        module: module.to_string(),
        name: name.to_string(),
        state: Value::None,
    }))
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`.
fn rebuild_tensor(args: Value) -> Result<TensorRef, String> {
    let Value::Tuple(items, _) = args else {
        return Err("_rebuild_tensor_v2 needs a tuple of arguments".into());
    };
    let [storage, offset, shape, stride, ..] = items.as_slice() else {
        return Err(format!(
            "_rebuild_tensor_v2 needs (storage, offset, size, stride), got {} arguments",
            items.len()
        ));
    };
    let Value::Persistent(storage) = storage else {
        return Err("the tensor's storage is not a persistent id".into());
    };
    let (dtype, storage_key) = storage_of(storage)?;
    let shape = usizes(shape, "size")?;
    let stride = usizes(stride, "stride")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "size has {} dimensions but stride has {}",
            shape.len(),
            stride.len()
        ));
    }
    Ok(TensorRef {
        name: String::new(),
        dtype,
        storage_key,
        offset: non_negative(offset, "storage offset")?,
        shape,
        stride,
    })
}

/// `('storage', torch.FloatStorage, key, location, numel)`: the element type and key.
fn storage_of(id: &Value) -> Result<(DType, String), String> {
    let Value::Tuple(items, _) = id else {
        return Err("the storage id is not a tuple".into());
    };
    let [Value::Str(kind), Value::Global(_, class), Value::Str(key), ..] = items.as_slice() else {
        return Err("the storage id is not ('storage', class, key, ...)".into());
    };
    if kind != "storage" {
        return Err(format!(
            "persistent id of kind {kind:?}, expected \"storage\""
        ));
    }
    let dtype = match class.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        other => return Err(format!("unsupported storage type {other}")),
    };
    Ok((dtype, key.clone()))
}

fn usizes(value: &Value, what: &str) -> Result<Vec<usize>, String> {
    let Value::Tuple(items, _) = value else {
        return Err(format!("the tensor's {what} is not a tuple"));
    };
    items.iter().map(|v| non_negative(v, what)).collect()
}

fn non_negative(value: &Value, what: &str) -> Result<usize, String> {
    match value {
        Value::Int(v) => usize::try_from(*v).map_err(|_| format!("negative {what} {v}")),
        _ => Err(format!("the tensor's {what} is not an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{'w': _rebuild_tensor_v2(persid(('storage', FloatStorage, '0', 'cpu', 6)), 0,
    /// (2, 3), (3, 1), False, OrderedDict())}` as protocol 2 opcodes.
    fn state_dict_pickle(shape_args: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'w'];
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
        p.extend([b'(', b'(', b'X', 7, 0, 0, 0]);
        p.extend(b"storage");
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend([b'X', 1, 0, 0, 0, b'0', b'X', 3, 0, 0, 0]);
        p.extend(b"cpu");
        p.extend([b'K', 6, b't', b'Q', b'K', 0]);
        p.extend(shape_args);
        p.extend([0x89, b')', b't', b'R', b'u', b'.']);
        p
    }

    #[test]
    fn reads_a_minimal_state_dict() {
        let pickle = state_dict_pickle(&[b'K', 2, b'K', 3, 0x86, b'K', 3, b'K', 1, 0x86]);
        let tensors = read_state_dict(&pickle).expect("reads");
        assert_eq!(
            tensors,
            vec![TensorRef {
                name: "w".into(),
                dtype: DType::F32,
                storage_key: "0".into(),
                offset: 0,
                shape: vec![2, 3],
                stride: vec![3, 1],
            }]
        );
    }

    /// `{'model': <state_dict_pickle's dict>, 'epoch': 3}`: SAM 2's official container.
    fn wrapped_pickle(shape_args: &[u8], key: &[u8]) -> Vec<u8> {
        let inner = state_dict_pickle(shape_args);
        let mut p = vec![0x80, 2, b'}', b'(', b'X', key.len() as u8, 0, 0, 0];
        p.extend(key);
        // The inner dict without its PROTO header and STOP.
        p.extend(&inner[2..inner.len() - 1]);
        p.extend([b'X', 5, 0, 0, 0]);
        p.extend(b"epoch");
        p.extend([b'K', 3, b'u', b'.']);
        p
    }

    #[test]
    fn a_model_container_is_unwrapped() {
        for key in [&b"model"[..], b"state_dict"] {
            let pickle = wrapped_pickle(&[b'K', 2, b'K', 3, 0x86, b'K', 3, b'K', 1, 0x86], key);
            let tensors = read_state_dict(&pickle).expect("reads");
            assert_eq!(tensors.len(), 1);
            assert_eq!(tensors[0].name, "w");
            assert_eq!(tensors[0].shape, vec![2, 3]);
        }
        let other = wrapped_pickle(&[b'K', 2, b'K', 3, 0x86, b'K', 3, b'K', 1, 0x86], b"optim");
        assert!(read_state_dict(&other).expect("reads").is_empty());
    }

    #[test]
    fn a_data_parallel_prefix_is_removed() {
        let mut pickle = state_dict_pickle(&[b'K', 2, b'K', 3, 0x86, b'K', 3, b'K', 1, 0x86]);
        // The key `w` (X, length 1) becomes `module.w`.
        let at = pickle.iter().position(|&b| b == b'X').expect("key");
        pickle.splice(
            at..at + 6,
            [b'X', 8, 0, 0, 0].into_iter().chain(*b"module.w"),
        );
        let tensors = read_state_dict(&pickle).expect("reads");
        assert_eq!(tensors[0].name, "w");
    }

    #[test]
    fn too_few_rebuild_arguments_are_an_error() {
        // A rebuild call with fewer than four arguments: candle's reader, used before,
        // panicked here (`Vec::remove` out of bounds).
        let pickle = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n)Ru.";
        let err = read_state_dict(pickle).unwrap_err();
        assert!(
            err.contains("needs (storage, offset, size, stride)"),
            "{err}"
        );
    }

    #[test]
    fn huge_string_lengths_do_not_allocate() {
        let err = read_state_dict(b"\x80\x02X\xff\xff\xff\xffabc").unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn memo_doubling_is_bounded() {
        // Each `h 0 h 0 t q 0` doubles the memoised tuple; 64 rounds would be 2^64 nodes.
        let mut pickle = vec![0x80, 2, b')', b'q', 0];
        for _ in 0..64 {
            pickle.extend([b'(', b'h', 0, b'h', 0, b't', b'q', 0]);
        }
        let err = read_state_dict(&pickle).unwrap_err();
        assert!(
            err.contains("more values than its size allows") || err.contains("deeper"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut pickle = vec![0x80, 2, b')'];
        pickle.extend(std::iter::repeat_n(0x85u8, 10_000));
        let err = read_state_dict(&pickle).unwrap_err();
        assert!(err.contains("deeper than 64"), "{err}");
    }

    #[test]
    fn mismatched_size_and_stride_are_refused() {
        let pickle = state_dict_pickle(&[b'K', 2, b'K', 3, 0x86, b'K', 1, 0x85]);
        let err = read_state_dict(&pickle).unwrap_err();
        assert!(err.contains("2 dimensions but stride has 1"), "{err}");
    }
}
