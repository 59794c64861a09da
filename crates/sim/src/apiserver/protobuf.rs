//! Just enough Kubernetes protobuf decoding for the kubectl commands that send it
//! (`kubectl create namespace`, `kubectl create configmap`). Other kinds answer 415.

use serde_json::{Map, Value, json};

use super::error::ApiError;

const MAGIC: &[u8] = b"k8s\x00";

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }

    fn next(&mut self) -> Option<Result<(u64, Field<'a>), ()>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let Some(key) = self.varint() else {
            return Some(Err(()));
        };
        let field = key >> 3;
        let parsed = match key & 7 {
            0 => self.varint().map(Field::Varint),
            1 => {
                self.pos += 8;
                Some(Field::Other)
            }
            5 => {
                self.pos += 4;
                Some(Field::Other)
            }
            2 => self.varint().and_then(|len| {
                let start = self.pos;
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                let bytes = self.buf.get(start..end)?;
                self.pos = end;
                Some(Field::Bytes(bytes))
            }),
            _ => None,
        };
        Some(parsed.map(|f| (field, f)).ok_or(()))
    }
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf body is malformed")
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some(f) = r.next() {
        out.push(f.map_err(|_| malformed())?);
    }
    Ok(out)
}

fn string(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

fn map_entry(b: &[u8]) -> Result<(String, Vec<u8>), ApiError> {
    let mut key = String::new();
    let mut value = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (2, Field::Bytes(v)) => value = v.to_vec(),
            _ => {}
        }
    }
    Ok((key, value))
}

fn object_meta(b: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                m.insert("name".into(), string(v));
            }
            (2, Field::Bytes(v)) => {
                m.insert("generateName".into(), string(v));
            }
            (3, Field::Bytes(v)) => {
                m.insert("namespace".into(), string(v));
            }
            (6, Field::Bytes(v)) => {
                m.insert("resourceVersion".into(), string(v));
            }
            (11, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                labels.insert(k, string(&val));
            }
            (12, Field::Bytes(v)) => {
                let (k, val) = map_entry(v)?;
                annotations.insert(k, string(&val));
            }
            (14, Field::Bytes(v)) => finalizers.push(string(v)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(ALPHABET.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into JSON.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => {
                            api_version = String::from_utf8_lossy(v).into_owned()
                        }
                        (2, Field::Bytes(v)) => kind = String::from_utf8_lossy(v).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(m)) => {
                        obj.insert("metadata".into(), object_meta(m)?);
                    }
                    (2, Field::Bytes(spec)) => {
                        let fins: Vec<Value> = fields(spec)?
                            .into_iter()
                            .filter_map(|(n, f)| match (n, f) {
                                (1, Field::Bytes(v)) => Some(string(v)),
                                _ => None,
                            })
                            .collect();
                        if !fins.is_empty() {
                            obj.insert("spec".into(), json!({"finalizers": fins}));
                        }
                    }
                    _ => {}
                }
            }
        }
        ("v1", "ConfigMap") => {
            let mut data = Map::new();
            let mut binary = Map::new();
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(m)) => {
                        obj.insert("metadata".into(), object_meta(m)?);
                    }
                    (2, Field::Bytes(e)) => {
                        let (k, v) = map_entry(e)?;
                        data.insert(k, string(&v));
                    }
                    (3, Field::Bytes(e)) => {
                        let (k, v) = map_entry(e)?;
                        binary.insert(k, json!(base64(&v)));
                    }
                    (4, Field::Varint(v)) => {
                        obj.insert("immutable".into(), json!(v != 0));
                    }
                    _ => {}
                }
            }
            if !data.is_empty() {
                obj.insert("data".into(), Value::Object(data));
            }
            if !binary.is_empty() {
                obj.insert("binaryData".into(), Value::Object(binary));
            }
        }
        _ => {
            return Err(ApiError::custom(
                415,
                "UnsupportedMediaType",
                format!(
                    "the embedded API server decodes protobuf only for v1 Namespace and ConfigMap, not {api_version} {kind}; send application/json"
                ),
            ));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn decodes_a_namespace_envelope() {
        let meta = [
            ld(1, b"inflate"),
            ld(11, &[ld(1, b"team"), ld(2, b"a")].concat()),
        ]
        .concat();
        let raw = ld(1, &meta);
        let type_meta = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let body = [MAGIC.to_vec(), ld(1, &type_meta), ld(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "inflate");
        assert_eq!(v["metadata"]["labels"]["team"], "a");
        assert_eq!(v["kind"], "Namespace");
        assert_eq!(base64(b"hi!?"), "aGkhPw==");
    }
}
