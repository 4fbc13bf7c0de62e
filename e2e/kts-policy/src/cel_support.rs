//! The CEL environment shared by CRD rules and admission policies: the cel-rust
//! standard library plus its strings, lists and math extensions, and the few Kubernetes
//! list functions (`isSorted`, `sum`, `min`, `max`) cel-rust lacks.

use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The extensions only fail on duplicate declarations, which a fresh stdlib cannot hold.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    Arc::new(env)
});

/// Parses an expression. cel-rust has no type checker, so unknown functions and
/// fields only show up when the expression runs.
pub(crate) fn compile(source: &str) -> Result<Program, String> {
    if source.trim().is_empty() {
        return Err("expression is empty".into());
    }
    ENV.compile(source).map_err(|e| e.to_string().trim().to_string())
}

/// A fresh evaluation context with the Kubernetes list library.
pub(crate) fn context() -> Context<'static, 'static> {
    let mut ctx = Context::with_env(ENV.clone());
    // Conflicts cannot happen here (the names are not stdlib overloads); ignore them
    // rather than panic should a future cel release add one.
    let _ = ctx.add_function("isSorted", |This(list): This<Arc<Vec<Value>>>| -> bool {
        list.windows(2).all(|w| w[0] <= w[1])
    });
    let _ =
        ctx.add_function("sum", |This(list): This<Arc<Vec<Value>>>| -> Result<Value, ExecutionError> { sum(&list) });
    let _ = ctx.add_function("min", |This(list): This<Arc<Vec<Value>>>| -> Result<Value, ExecutionError> {
        extreme(&list, std::cmp::Ordering::Less, "min")
    });
    let _ = ctx.add_function("max", |This(list): This<Arc<Vec<Value>>>| -> Result<Value, ExecutionError> {
        extreme(&list, std::cmp::Ordering::Greater, "max")
    });
    ctx
}

fn sum(list: &[Value]) -> Result<Value, ExecutionError> {
    let mut int: i64 = 0;
    let mut float: Option<f64> = None;
    for v in list {
        match v {
            Value::Int(i) => {
                int = int.checked_add(*i).ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?
            }
            Value::Float(f) => *float.get_or_insert(0.0) += f,
            other => return Err(ExecutionError::function_error("sum", format!("cannot sum {other:?}"))),
        }
    }
    Ok(match float {
        Some(f) => Value::Float(f + int as f64),
        None => Value::Int(int),
    })
}

fn extreme(list: &[Value], want: std::cmp::Ordering, name: &str) -> Result<Value, ExecutionError> {
    let mut best: Option<&Value> = None;
    for v in list {
        if best.is_none_or(|b| v.partial_cmp(b) == Some(want)) {
            best = Some(v);
        }
    }
    best.cloned().ok_or_else(|| ExecutionError::function_error(name, "list is empty"))
}

/// JSON → CEL: integers stay `int` (Kubernetes decodes JSON integers as int64).
pub(crate) fn to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        serde_json::Value::Object(map) => {
            let m: HashMap<Key, Value> =
                map.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            Value::Map(Map { map: Arc::new(m) })
        }
    }
}

/// Builds a CEL map with string keys.
pub(crate) fn map_of(entries: Vec<(&str, Value)>) -> Value {
    let m: HashMap<Key, Value> = entries.into_iter().map(|(k, v)| (Key::String(Arc::new(k.to_string())), v)).collect();
    Value::Map(Map { map: Arc::new(m) })
}

pub(crate) fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

/// Reads a string field of a CEL map.
pub(crate) fn get_str(map: &Map, key: &str) -> Option<String> {
    match map.get(&Key::String(Arc::new(key.to_string()))) {
        Some(Value::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

pub(crate) fn get(map: &Map, key: &str) -> Option<Value> {
    map.get(&Key::String(Arc::new(key.to_string()))).cloned()
}

/// Copies `map` with `key` set to `value`.
pub(crate) fn with(map: &Map, key: &str, value: Value) -> Map {
    let mut m = (*map.map).clone();
    m.insert(Key::String(Arc::new(key.to_string())), value);
    Map { map: Arc::new(m) }
}

/// cel-go's wording for the common runtime errors, cel-rust's for the rest.
pub(crate) fn error_text(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        cel::ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {i:?}"),
        cel::ExecutionError::DivisionByZero(_) => "division by zero".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{compile, context, to_cel};
    use serde_json::json;

    /// Every function the README promises evaluates to true here.
    #[test]
    fn documented_cel_subset_works() {
        let mut ctx = context();
        ctx.add_variable_from_value("o", to_cel(&json!({"a": [3, 1, 2], "s": "Hello", "n": null})));
        for src in [
            "has(o.a) && !has(o.b)",
            "o.a.all(x, x > 0) && o.a.exists(x, x == 2) && o.a.exists_one(x, x == 3)",
            "o.a.map(x, x * 2) == [6, 2, 4] && o.a.filter(x, x > 1) == [3, 2]",
            "size(o.a) == 3 && 2 in o.a && (o.s == 'Hello' ? true : false)",
            "o.?b.orValue(5) == 5 && !o.?b.hasValue()",
            "int('5') == 5 && string(5) == '5' && double(1) == 1.0 && bytes('a') == b'a' && type(1) == int",
            "timestamp('2026-01-02T00:00:00Z') - timestamp('2026-01-01T00:00:00Z') == duration('24h')",
            "o.s.matches('^H') && o.s.startsWith('He') && o.s.endsWith('lo') && o.s.contains('ell')",
            "o.s.lowerAscii() == 'hello' && o.s.upperAscii() == 'HELLO' && ' x '.trim() == 'x'",
            "'a,b'.split(',') == ['a', 'b'] && ['a', 'b'].join('-') == 'a-b' && o.s.replace('l', 'L') == 'HeLLo'",
            "o.s.substring(1, 3) == 'el' && o.s.indexOf('l') == 2 && o.s.lastIndexOf('l') == 3 && o.s.charAt(0) == 'H'",
            "'%s=%d'.format(['a', 1]) == 'a=1' && 'ab'.reverse() == 'ba'",
            "o.a.slice(0, 2) == [3, 1] && [[1], [2]].flatten() == [1, 2] && [1, 1].distinct() == [1] && o.a.sort() == [1, 2, 3]",
            "o.a.sortBy(x, -x) == [3, 2, 1] && lists.range(3) == [0, 1, 2]",
            "math.greatest(1, 5, 3) == 5 && math.least(o.a) == 1 && math.abs(-2) == 2",
            "[1, 2, 3].isSorted() && !o.a.isSorted() && o.a.sum() == 6 && o.a.min() == 1 && o.a.max() == 3",
            "o.n == null",
        ] {
            let program = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(program.execute(&ctx), Ok(cel::Value::Bool(true)), "{src}");
        }
    }
}
