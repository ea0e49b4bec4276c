//! Reading Kafka's JSON message specs into a model the emitters walk.

use std::fmt;

use serde_json::Value;

/// An inclusive range of versions; `None` is the empty range ("none").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions(pub Option<(i16, i16)>);

impl Versions {
    pub const NONE: Versions = Versions(None);

    pub fn parse(text: &str) -> Result<Versions, String> {
        let text = text.trim();
        if text == "none" {
            return Ok(Versions::NONE);
        }
        let number = |s: &str| {
            s.trim()
                .parse::<i16>()
                .map_err(|_| format!("bad version range {text:?}"))
        };
        if let Some(low) = text.strip_suffix('+') {
            return Ok(Versions(Some((number(low)?, i16::MAX))));
        }
        if let Some((low, high)) = text.split_once('-') {
            return Ok(Versions(Some((number(low)?, number(high)?))));
        }
        let only = number(text)?;
        Ok(Versions(Some((only, only))))
    }

    pub fn is_empty(self) -> bool {
        self.0.is_none()
    }

    pub fn contains(self, version: i16) -> bool {
        matches!(self.0, Some((low, high)) if low <= version && version <= high)
    }

    pub fn intersect(self, other: Versions) -> Versions {
        match (self.0, other.0) {
            (Some((a, b)), Some((c, d))) if a.max(c) <= b.min(d) => {
                Versions(Some((a.max(c), b.min(d))))
            }
            _ => Versions::NONE,
        }
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "none"),
            Some((low, i16::MAX)) => write!(f, "{low}+"),
            Some((low, high)) => write!(f, "{low}-{high}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    String,
    Bytes,
    Uuid,
    Records,
    Struct(String),
    Array(Box<Type>),
}

impl Type {
    fn parse(text: &str) -> Type {
        if let Some(element) = text.strip_prefix("[]") {
            return Type::Array(Box::new(Type::parse(element)));
        }
        match text {
            "bool" => Type::Bool,
            "int8" => Type::Int8,
            "int16" => Type::Int16,
            "uint16" => Type::Uint16,
            "int32" => Type::Int32,
            "uint32" => Type::Uint32,
            "int64" => Type::Int64,
            "float64" => Type::Float64,
            "string" => Type::String,
            "bytes" => Type::Bytes,
            "uuid" => Type::Uuid,
            "records" => Type::Records,
            name => Type::Struct(name.to_owned()),
        }
    }

    /// Bytes of a fixed-size primitive, `None` for variable-size types.
    pub fn fixed_len(&self) -> Option<usize> {
        match self {
            Type::Bool | Type::Int8 => Some(1),
            Type::Int16 | Type::Uint16 => Some(2),
            Type::Int32 | Type::Uint32 => Some(4),
            Type::Int64 | Type::Float64 => Some(8),
            Type::Uuid => Some(16),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub versions: Versions,
    pub nullable: Versions,
    pub tag: Option<u32>,
    pub tagged: Versions,
    /// A field-level override of the message's flexible versions.
    pub flexible: Option<Versions>,
    pub default: Option<Value>,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Header,
    Data,
}

#[derive(Debug, Clone)]
pub struct Spec {
    /// The file name without `.json`, e.g. `MetadataRequest`.
    pub file_stem: String,
    pub name: String,
    pub kind: Kind,
    pub api_key: Option<i16>,
    pub valid: Versions,
    /// The highest valid version is still being designed upstream; Kafka
    /// does not advertise it by default.
    pub latest_unstable: bool,
    pub flexible: Versions,
    pub fields: Vec<Field>,
    pub common: Vec<StructDef>,
}

/// Removes `//` comments outside strings; the specs are JSON with comments.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn text<'a>(object: &'a Value, key: &str, context: &str) -> Result<&'a str, String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{context}: missing string {key:?}"))
}

fn versions(object: &Value, key: &str, context: &str) -> Result<Option<Versions>, String> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(range)) => Versions::parse(range)
            .map(Some)
            .map_err(|e| format!("{context}: {e}")),
        Some(other) => Err(format!("{context}: {key} is not a string: {other}")),
    }
}

fn fields(list: Option<&Value>, context: &str) -> Result<Vec<Field>, String> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("{context}: fields is not an array"))?;
    list.iter()
        .map(|field| parse_field(field, context))
        .collect()
}

fn parse_field(object: &Value, context: &str) -> Result<Field, String> {
    let name = text(object, "name", context)?.to_owned();
    let context = format!("{context}.{name}");
    let tag = match object.get("tag") {
        None => None,
        Some(tag) => Some(
            match tag {
                Value::String(text) => text.trim().parse::<u32>().ok(),
                other => other.as_u64().and_then(|tag| u32::try_from(tag).ok()),
            }
            .ok_or_else(|| format!("{context}: bad tag"))?,
        ),
    };
    Ok(Field {
        ty: Type::parse(text(object, "type", &context)?),
        versions: versions(object, "versions", &context)?
            .ok_or_else(|| format!("{context}: missing versions"))?,
        nullable: versions(object, "nullableVersions", &context)?.unwrap_or(Versions::NONE),
        tagged: versions(object, "taggedVersions", &context)?.unwrap_or(Versions::NONE),
        flexible: versions(object, "flexibleVersions", &context)?,
        default: object.get("default").cloned(),
        fields: fields(object.get("fields"), &context)?,
        tag,
        name,
    })
}

pub fn parse_spec(file_stem: &str, source: &str) -> Result<Spec, String> {
    let value: Value = serde_json::from_str(&strip_comments(source))
        .map_err(|e| format!("{file_stem}: invalid JSON: {e}"))?;
    let name = text(&value, "name", file_stem)?.to_owned();
    let kind = match text(&value, "type", file_stem)? {
        "request" => Kind::Request,
        "response" => Kind::Response,
        "header" => Kind::Header,
        "data" => Kind::Data,
        other => return Err(format!("{file_stem}: unknown type {other:?}")),
    };
    let api_key = match value.get("apiKey") {
        None => None,
        Some(key) => Some(
            key.as_i64()
                .and_then(|key| i16::try_from(key).ok())
                .ok_or_else(|| format!("{file_stem}: bad apiKey"))?,
        ),
    };
    let mut common = Vec::new();
    if let Some(list) = value.get("commonStructs").and_then(Value::as_array) {
        for item in list {
            let struct_name = text(item, "name", file_stem)?.to_owned();
            common.push(StructDef {
                fields: fields(item.get("fields"), &format!("{file_stem}.{struct_name}"))?,
                name: struct_name,
            });
        }
    }
    Ok(Spec {
        file_stem: file_stem.to_owned(),
        valid: versions(&value, "validVersions", file_stem)?
            .ok_or_else(|| format!("{file_stem}: missing validVersions"))?,
        flexible: versions(&value, "flexibleVersions", file_stem)?
            .ok_or_else(|| format!("{file_stem}: missing flexibleVersions"))?,
        latest_unstable: value
            .get("latestVersionUnstable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        fields: fields(value.get("fields"), file_stem)?,
        name,
        kind,
        api_key,
        common,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings_only() {
        let source = "// licence\n{ \"a\": \"x // y\", // note\n \"b\": \"q\\\"//\" }";
        let value: Value = serde_json::from_str(&strip_comments(source)).expect("json");
        assert_eq!(value["a"], "x // y");
        assert_eq!(value["b"], "q\"//");
    }

    #[test]
    fn version_ranges_parse() {
        assert_eq!(Versions::parse("3+"), Ok(Versions(Some((3, i16::MAX)))));
        assert_eq!(Versions::parse("0-2"), Ok(Versions(Some((0, 2)))));
        assert_eq!(Versions::parse("7"), Ok(Versions(Some((7, 7)))));
        assert_eq!(Versions::parse("none"), Ok(Versions::NONE));
        assert!(Versions::parse("x").is_err());
        assert_eq!(
            Versions::parse("2+").map(|v| v.intersect(Versions(Some((0, 4))))),
            Ok(Versions(Some((2, 4))))
        );
        assert_eq!(Versions(Some((3, 5))).to_string(), "3-5");
    }
}
