//! Which stored value a new value corresponds to on update, for `oldSelf` and for
//! ratcheting. Mirrors the real rules: object properties and map entries correlate by
//! key, `x-kubernetes-list-type: map` items by their map keys, `set` items by value;
//! items of atomic lists do not correlate at all.

use super::node::Node;
use serde_json::Value;

/// The old counterpart of list item `item` of a list described by `list`.
pub(crate) fn item<'a>(list: &Node, item: &Value, old_list: Option<&'a Value>) -> Option<&'a Value> {
    let old_items = old_list?.as_array()?;
    match list.list_type.as_deref() {
        Some("map") if !list.list_map_keys.is_empty() => {
            let key = map_key(list, item)?;
            old_items.iter().find(|o| map_key(list, o).as_ref() == Some(&key))
        }
        Some("set") => old_items.iter().find(|o| *o == item),
        _ => None,
    }
}

/// The values of the list-map keys of `item`, `None` for a non-object item.
pub(crate) fn map_key(list: &Node, item: &Value) -> Option<Vec<Value>> {
    let obj = item.as_object()?;
    Some(list.list_map_keys.iter().map(|k| obj.get(k).cloned().unwrap_or(Value::Null)).collect())
}
