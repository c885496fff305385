//! A minimal reader for the pickle stream `torch.save` writes as `data.pkl`.
//!
//! It understands the opcodes a state dict uses (protocol 2 to 4): dicts and
//! `OrderedDict`s of tensors rebuilt by `torch._utils._rebuild_tensor_v2`
//! from `persistent_load` storage ids, plus the scalars, strings, tuples and
//! lists around them. Anything else is refused with the opcode and offset. It
//! never executes code: globals are only names, and only the tensor rebuild
//! and `OrderedDict` are given a meaning.

use std::collections::HashMap;

/// What went wrong reading the pickle stream.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    /// The stream ended inside an opcode.
    #[error("the pickle ends early at byte {0}")]
    Truncated(usize),
    /// An opcode this reader does not handle.
    #[error("unsupported pickle opcode 0x{op:02x} at byte {at}")]
    Opcode {
        /// The opcode byte.
        op: u8,
        /// Its offset.
        at: usize,
    },
    /// The stream is not a valid pickle (stack underflow, bad memo index, ...).
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed {
        /// Offset of the opcode.
        at: usize,
        /// What was wrong.
        what: String,
    },
}

/// Where a tensor's elements are: a storage entry of the archive plus a view.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage key (`data/<key>` in the archive).
    pub storage: String,
    /// The storage class name, e.g. `FloatStorage`.
    pub dtype: String,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict (insertion order kept).
    Dict(Vec<(Value, Value)>),
    /// A global name (`module.name`), never resolved to code.
    Global(String, String),
    /// A persistent id, as given to `persistent_load`.
    PersId(Box<Value>),
    /// A tensor view.
    Tensor(TensorRef),
    /// The result of calling a global this reader gives no meaning to.
    Object(String),
}

/// Bounds that keep a hostile stream from exhausting memory.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;

/// Parse a pickle stream.
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    Reader {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(PickleError::Truncated(self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Result<String, PickleError> {
        let at = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad(at, "string is not UTF-8"))
    }

    fn push(&mut self, v: Value, at: usize) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(bad(at, "stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self, at: usize) -> Result<Value, PickleError> {
        self.stack.pop().ok_or_else(|| bad(at, "stack underflow"))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>, PickleError> {
        let m = self.marks.pop().ok_or_else(|| bad(at, "no mark"))?;
        if m > self.stack.len() {
            return Err(bad(at, "mark above the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn top_mut(&mut self, at: usize) -> Result<&mut Value, PickleError> {
        self.stack
            .last_mut()
            .ok_or_else(|| bad(at, "stack underflow"))
    }

    fn memo_put(&mut self, key: u32, at: usize) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_MEMO {
            return Err(bad(at, "memo too large"));
        }
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| bad(at, "memo of an empty stack"))?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32, at: usize) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| bad(at, format!("memo key {key} not set")))?;
        self.push(v, at)
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            if op == b'.' {
                return self.pop(at);
            }
            if !self.literal(op, at)? {
                self.structure(op, at)?;
            }
        }
    }

    /// Framing and the opcodes that push a literal; false for any other opcode.
    fn literal(&mut self, op: u8, at: usize) -> Result<bool, PickleError> {
        match op {
            0x80 => {
                self.u8()?; // PROTO
            }
            0x95 => {
                self.take(8)?; // FRAME
            }
            b'N' => self.push(Value::None, at)?,
            0x88 => self.push(Value::Bool(true), at)?,
            0x89 => self.push(Value::Bool(false), at)?,
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v.into()), at)?
            }
            b'M' => {
                let b = self.take(2)?;
                let v = u16::from_le_bytes([b[0], b[1]]);
                self.push(Value::Int(v.into()), at)?
            }
            b'J' => {
                let v = self.u32()? as i32;
                self.push(Value::Int(v.into()), at)?
            }
            0x8a => {
                let n = self.u8()? as usize;
                let v = long1(self.take(n)?).ok_or_else(|| bad(at, "LONG1 too wide"))?;
                self.push(Value::Int(v), at)?
            }
            b'G' => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.push(Value::Float(f64::from_be_bytes(a)), at)?
            }
            b'X' => {
                let n = self.u32()? as usize;
                let s = self.string(n)?;
                self.push(Value::Str(s), at)?
            }
            0x8c => {
                let n = self.u8()? as usize;
                let s = self.string(n)?;
                self.push(Value::Str(s), at)?
            }
            b'U' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?.to_vec();
                self.push(Value::Bytes(b), at)?
            }
            b'C' => {
                let n = self.u8()? as usize;
                let b = self.take(n)?.to_vec();
                self.push(Value::Bytes(b), at)?
            }
            b'B' | b'T' => {
                let n = self.u32()? as usize;
                let b = self.take(n)?.to_vec();
                self.push(Value::Bytes(b), at)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Marks, containers, globals, the memo, persistent ids and reduction.
    fn structure(&mut self, op: u8, at: usize) -> Result<(), PickleError> {
        match op {
            b'(' => self.marks.push(self.stack.len()),
            b'}' => self.push(Value::Dict(Vec::new()), at)?,
            b']' => self.push(Value::List(Vec::new()), at)?,
            b')' => self.push(Value::Tuple(Vec::new()), at)?,
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global(module, name), at)?
            }
            0x93 => {
                let name = self.pop(at)?;
                let module = self.pop(at)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n), at)?,
                    _ => return Err(bad(at, "STACK_GLOBAL needs two strings")),
                }
            }
            b'q' => {
                let k = self.u8()?;
                self.memo_put(k.into(), at)?
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k, at)?
            }
            0x94 => {
                let k = self.memo.len() as u32;
                self.memo_put(k, at)?
            }
            b'h' => {
                let k = self.u8()?;
                self.memo_get(k.into(), at)?
            }
            b'j' => {
                let k = self.u32()?;
                self.memo_get(k, at)?
            }
            b't' => {
                let items = self.pop_mark(at)?;
                self.push(Value::Tuple(items), at)?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n {
                    return Err(bad(at, "stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push(Value::Tuple(items), at)?
            }
            b'l' => {
                let items = self.pop_mark(at)?;
                self.push(Value::List(items), at)?
            }
            b'a' => {
                let v = self.pop(at)?;
                match self.top_mut(at)? {
                    Value::List(l) => l.push(v),
                    _ => return Err(bad(at, "APPEND to a non-list")),
                }
            }
            b'e' => {
                let items = self.pop_mark(at)?;
                match self.top_mut(at)? {
                    Value::List(l) => l.extend(items),
                    _ => return Err(bad(at, "APPENDS to a non-list")),
                }
            }
            b's' => {
                let v = self.pop(at)?;
                let k = self.pop(at)?;
                dict_insert(self.top_mut(at)?, vec![k, v], at)?
            }
            b'u' => {
                let items = self.pop_mark(at)?;
                dict_insert(self.top_mut(at)?, items, at)?
            }
            b'Q' => {
                let pid = self.pop(at)?;
                self.push(Value::PersId(Box::new(pid)), at)?
            }
            b'R' => {
                let args = self.pop(at)?;
                let func = self.pop(at)?;
                let v = reduce(func, args, at)?;
                self.push(v, at)?
            }
            b'b' => {
                // BUILD: object state (e.g. a state dict's `_metadata`); dropped.
                self.pop(at)?;
                if self.stack.is_empty() {
                    return Err(bad(at, "BUILD on an empty stack"));
                }
            }
            _ => return Err(PickleError::Opcode { op, at }),
        }
        Ok(())
    }
}

fn bad(at: usize, what: impl Into<String>) -> PickleError {
    PickleError::Malformed {
        at,
        what: what.into(),
    }
}

fn long1(b: &[u8]) -> Option<i64> {
    if b.len() > 8 {
        return None;
    }
    if b.is_empty() {
        return Some(0);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut a = if neg { [0xffu8; 8] } else { [0u8; 8] };
    a[..b.len()].copy_from_slice(b);
    Some(i64::from_le_bytes(a))
}

fn dict_insert(target: &mut Value, items: Vec<Value>, at: usize) -> Result<(), PickleError> {
    let Value::Dict(d) = target else {
        return Err(bad(at, "SETITEM on a non-dict"));
    };
    if !items.len().is_multiple_of(2) {
        return Err(bad(at, "odd number of dict items"));
    }
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.push((k, v));
    }
    Ok(())
}

fn reduce(func: Value, args: Value, at: usize) -> Result<Value, PickleError> {
    let Value::Global(module, name) = func else {
        return Err(bad(at, "REDUCE of a non-global"));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") => rebuild_tensor(args, at),
        _ => Ok(Value::Object(format!("{module}.{name}"))),
    }
}

fn usizes(v: &Value, at: usize, what: &str) -> Result<Vec<usize>, PickleError> {
    let Value::Tuple(items) = v else {
        return Err(bad(at, format!("tensor {what} is not a tuple")));
    };
    items
        .iter()
        .map(|i| match i {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            _ => Err(bad(at, format!("tensor {what} holds a non-count"))),
        })
        .collect()
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`
/// with `storage` a persistent id `('storage', <Class>, key, location, numel)`.
fn rebuild_tensor(args: Value, at: usize) -> Result<Value, PickleError> {
    let Value::Tuple(a) = args else {
        return Err(bad(at, "tensor arguments are not a tuple"));
    };
    if a.len() < 4 {
        return Err(bad(at, "too few tensor arguments"));
    }
    let Value::PersId(pid) = &a[0] else {
        return Err(bad(at, "tensor storage is not a persistent id"));
    };
    let (storage, dtype) = match pid.as_ref() {
        Value::Tuple(p) if p.len() >= 3 => match (&p[1], &p[2]) {
            (Value::Global(_, class), Value::Str(key)) => (key.clone(), class.clone()),
            _ => return Err(bad(at, "unexpected storage id")),
        },
        _ => return Err(bad(at, "unexpected storage id")),
    };
    let offset = match a[1] {
        Value::Int(n) if n >= 0 => n as usize,
        _ => return Err(bad(at, "tensor offset is not a count")),
    };
    let shape = usizes(&a[2], at, "size")?;
    let stride = usizes(&a[3], at, "stride")?;
    if shape.len() != stride.len() {
        return Err(bad(at, "tensor size and stride differ in rank"));
    }
    Ok(Value::Tensor(TensorRef {
        storage,
        dtype,
        offset,
        shape,
        stride,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protocol-2 pickle of `{'w': _rebuild_tensor_v2(('storage',
    /// FloatStorage, '0', 'cpu', 6), 0, (2, 3), (3, 1), False, OrderedDict())}`,
    /// laid out the way `torch.save` writes it.
    fn tiny_state_dict() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X'];
        p.extend(1u32.to_le_bytes());
        p.extend(b"w");
        p.extend(b"q\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02(");
        p.extend(b"(X");
        p.extend(7u32.to_le_bytes());
        p.extend(b"storage");
        p.extend(b"ctorch\nFloatStorage\nq\x03X");
        p.extend(1u32.to_le_bytes());
        p.extend(b"0X");
        p.extend(3u32.to_le_bytes());
        p.extend(b"cpuK\x06tq\x04Q");
        p.extend(b"K\x00K\x02K\x03\x86K\x03K\x01\x86\x89");
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend(b"tq\x05Rq\x06u.");
        p
    }

    #[test]
    fn reads_a_state_dict_entry() {
        let v = parse(&tiny_state_dict()).unwrap();
        let Value::Dict(d) = v else {
            panic!("not a dict: {v:?}")
        };
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, Value::Str("w".into()));
        assert_eq!(
            d[0].1,
            Value::Tensor(TensorRef {
                storage: "0".into(),
                dtype: "FloatStorage".into(),
                offset: 0,
                shape: vec![2, 3],
                stride: vec![3, 1],
            })
        );
    }

    #[test]
    fn a_truncated_stream_is_an_error_not_a_panic() {
        let p = tiny_state_dict();
        for n in 0..p.len() - 1 {
            assert!(parse(&p[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn unknown_opcodes_and_bad_memo_are_refused() {
        assert_eq!(
            parse(&[0x80, 2, b'i']),
            Err(PickleError::Opcode { op: b'i', at: 2 })
        );
        assert!(matches!(
            parse(&[0x80, 2, b'h', 9, b'.']),
            Err(PickleError::Malformed { .. })
        ));
    }

    #[test]
    fn long1_sign_extends() {
        assert_eq!(long1(&[0xff]), Some(-1));
        assert_eq!(long1(&[0x00, 0x01]), Some(256));
        assert_eq!(long1(&[]), Some(0));
        assert_eq!(long1(&[0; 9]), None);
    }
}
