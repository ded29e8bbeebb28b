//! Reading the scripts' replies: the plain values they are made of.

use redis::Value;

use super::unavailable;
use crate::store::StoreError;

pub(super) fn into_items(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unavailable(format!("unexpected script reply {other:?}"))),
    }
}

pub(super) fn tag(items: &[Value]) -> Result<i64, StoreError> {
    match items.first() {
        Some(Value::Int(tag)) => Ok(*tag),
        other => Err(unavailable(format!("unexpected script tag {other:?}"))),
    }
}

pub(super) fn text(value: Option<&Value>) -> Result<String, StoreError> {
    match value {
        Some(Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).map_err(unavailable),
        Some(Value::SimpleString(text)) => Ok(text.clone()),
        Some(Value::Nil) | None => Ok(String::new()),
        Some(other) => Err(unavailable(format!("unexpected reply {other:?}"))),
    }
}

/// An HGETALL reply as (field, value) pairs.
pub(super) fn pairs(value: Option<&Value>) -> Result<Vec<(String, String)>, StoreError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(Value::Map(map)) => {
            return map
                .iter()
                .map(|(k, v)| Ok((text(Some(k))?, text(Some(v))?)))
                .collect();
        }
        _ => return Ok(Vec::new()),
    };
    items
        .chunks(2)
        .map(|pair| Ok((text(pair.first())?, text(pair.get(1))?)))
        .collect()
}
