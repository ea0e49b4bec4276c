//! Emitting Rust for one spec file: a struct per message and nested struct,
//! each with one `encode`, `encoded_len` and `decode` that branch on the
//! version at run time (one copy per struct keeps compile times down).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::names::{field_ident, field_local, snake_case};
use crate::spec::{Field, Spec, StructDef, Type, Versions};

/// Whether a piece of code runs for a version: always, never, or when a
/// Rust boolean expression over `version` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Always,
    Never,
    When(String),
}

impl Cond {
    pub fn of(versions: Versions) -> Cond {
        match versions.0 {
            None => Cond::Never,
            Some((0, i16::MAX)) => Cond::Always,
            Some((low, i16::MAX)) => Cond::When(format!("version >= {low}")),
            Some((low, high)) if low == high => Cond::When(format!("version == {low}")),
            Some((0, high)) => Cond::When(format!("version <= {high}")),
            Some((low, high)) => Cond::When(format!("({low}..={high}).contains(&version)")),
        }
    }

    /// The condition as a boolean expression.
    pub fn expr(&self) -> String {
        match self {
            Cond::Always => "true".to_owned(),
            Cond::Never => "false".to_owned(),
            Cond::When(expr) => expr.clone(),
        }
    }

    /// `code` guarded by the condition.
    pub fn guard(&self, code: &str) -> String {
        match self {
            Cond::Always => format!("{code}\n"),
            Cond::Never => String::new(),
            Cond::When(expr) => format!("if {expr} {{ {code} }}\n"),
        }
    }
}

/// True if `ident` occurs in `code` as a whole identifier that is neither a
/// struct field (`self.ident`) nor a field name in a struct literal (`ident: x`).
pub fn uses_ident(code: &str, ident: &str) -> bool {
    let is_ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(ident).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + ident.len()..];
        let field_init = after.starts_with(':') && !after.starts_with("::");
        !before.is_some_and(|c| is_ident_char(c) || c == '.' || c == ':')
            && !after.chars().next().is_some_and(is_ident_char)
            && !field_init
    })
}

/// Every struct a spec declares, top-level first, then nested ones in order
/// of appearance, then common structs.
pub fn collect_structs(spec: &Spec) -> Vec<StructDef> {
    fn walk(fields: &[Field], out: &mut Vec<StructDef>) {
        for field in fields {
            if field.fields.is_empty() {
                continue;
            }
            let name = match &field.ty {
                Type::Struct(name) => name,
                Type::Array(element) => match element.as_ref() {
                    Type::Struct(name) => name,
                    _ => continue,
                },
                _ => continue,
            };
            if out.iter().all(|existing| &existing.name != name) {
                out.push(StructDef {
                    name: name.clone(),
                    fields: field.fields.clone(),
                });
            }
            walk(&field.fields, out);
        }
    }
    let mut out = vec![StructDef {
        name: spec.name.clone(),
        fields: spec.fields.clone(),
    }];
    walk(&spec.fields, &mut out);
    for common in &spec.common {
        if out.iter().all(|existing| existing.name != common.name) {
            out.push(common.clone());
        }
        walk(&common.fields, &mut out);
    }
    out
}

pub struct FileEmitter<'a> {
    pub spec: &'a Spec,
    pub structs: Vec<StructDef>,
    by_name: HashMap<String, usize>,
}

fn default_integer(value: Option<&Value>) -> Result<i64, String> {
    match value {
        None => Ok(0),
        Some(Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| format!("default {number} is not an integer")),
        Some(Value::String(text)) => {
            let text = text.trim();
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
                i64::from_str_radix(hex, 16)
            } else if digits.len() > 1 && digits.starts_with('0') {
                i64::from_str_radix(&digits[1..], 8)
            } else {
                digits.parse::<i64>()
            }
            .map_err(|_| format!("default {text:?} is not an integer"))?;
            Ok(if negative { -magnitude } else { magnitude })
        }
        Some(other) => Err(format!("default {other} is not an integer")),
    }
}

fn default_is_null(field: &Field) -> bool {
    matches!(&field.default, Some(Value::String(text)) if text == "null")
}

impl<'a> FileEmitter<'a> {
    pub fn new(spec: &'a Spec) -> FileEmitter<'a> {
        let structs = collect_structs(spec);
        let by_name = structs
            .iter()
            .enumerate()
            .map(|(index, def)| (def.name.clone(), index))
            .collect();
        FileEmitter {
            spec,
            structs,
            by_name,
        }
    }

    pub fn module_name(&self) -> String {
        snake_case(&self.spec.file_stem)
    }

    fn has_tagged_section(&self) -> bool {
        !self.spec.flexible.is_empty()
    }

    fn struct_def(&self, name: &str) -> Result<&StructDef, String> {
        self.by_name
            .get(name)
            .map(|&index| &self.structs[index])
            .ok_or_else(|| format!("{}: unknown struct type {name}", self.spec.file_stem))
    }

    /// The versions in which a field is on the wire.
    pub fn present(&self, field: &Field) -> Versions {
        if field.tag.is_some() {
            field
                .versions
                .intersect(field.tagged)
                .intersect(self.spec.flexible)
        } else {
            field.versions
        }
    }

    /// The expression telling whether a field uses compact encodings.
    pub fn compact(&self, field: &Field) -> String {
        match field.flexible {
            Some(own) => Cond::of(own).expr(),
            None => match Cond::of(self.spec.flexible) {
                Cond::When(_) => "flexible".to_owned(),
                other => other.expr(),
            },
        }
    }

    pub fn flexible_cond(&self) -> Cond {
        Cond::of(self.spec.flexible)
    }

    pub fn is_option(field: &Field) -> bool {
        field.ty == Type::Records || !field.nullable.is_empty()
    }

    pub fn nullable(field: &Field) -> String {
        Cond::of(field.nullable).expr()
    }

    fn element_type(element: &Type) -> Result<String, String> {
        Ok(match element {
            Type::Bool => "bool".to_owned(),
            Type::Int8 => "i8".to_owned(),
            Type::Int16 => "i16".to_owned(),
            Type::Uint16 => "u16".to_owned(),
            Type::Int32 => "i32".to_owned(),
            Type::Uint32 => "u32".to_owned(),
            Type::Int64 => "i64".to_owned(),
            Type::Float64 => "f64".to_owned(),
            Type::String => "String".to_owned(),
            Type::Bytes => "Bytes".to_owned(),
            Type::Uuid => "Uuid".to_owned(),
            Type::Struct(name) => name.clone(),
            Type::Records | Type::Array(_) => {
                return Err(format!("unsupported array element {element:?}"));
            }
        })
    }

    /// Arrays of integers of at most 4 bytes (replica lists, partition
    /// indexes) are usually a handful of elements: they are decoded into an
    /// `InlineVec`, which holds up to 4 without a heap allocation.
    fn is_inline(element: &Type) -> bool {
        matches!(
            element,
            Type::Int8 | Type::Int16 | Type::Uint16 | Type::Int32 | Type::Uint32
        )
    }

    pub fn rust_type(field: &Field) -> Result<String, String> {
        let base = match &field.ty {
            Type::Records => return Ok("Option<Records>".to_owned()),
            Type::Array(element) if Self::is_inline(element) => {
                format!("InlineVec<{}>", Self::element_type(element)?)
            }
            Type::Array(element) => format!("Vec<{}>", Self::element_type(element)?),
            other => Self::element_type(other)?,
        };
        Ok(if Self::is_option(field) {
            format!("Option<{base}>")
        } else {
            base
        })
    }

    /// The field's default value as a Rust expression, honoring the spec's
    /// `default` (Kafka's defaults: zero, false, empty, null for records).
    pub fn default_expr(field: &Field) -> Result<String, String> {
        let option = Self::is_option(field);
        let null = default_is_null(field);
        let wrap = |value: String| {
            if !option {
                value
            } else if null {
                "None".to_owned()
            } else {
                format!("Some({value})")
            }
        };
        let context = |e: String| format!("field {}: {e}", field.name);
        Ok(match &field.ty {
            Type::Int8 | Type::Int16 | Type::Uint16 | Type::Int32 | Type::Uint32 | Type::Int64 => {
                default_integer(field.default.as_ref())
                    .map_err(context)?
                    .to_string()
            }
            Type::Float64 => match &field.default {
                None => "0.0".to_owned(),
                Some(value) => {
                    let number: f64 = match value {
                        Value::Number(n) => n.as_f64().unwrap_or(0.0),
                        Value::String(s) => s
                            .trim()
                            .parse()
                            .map_err(|_| context(format!("bad float {s:?}")))?,
                        _ => return Err(context("bad float default".to_owned())),
                    };
                    format!("{number:?}")
                }
            },
            Type::Bool => match &field.default {
                None => "false".to_owned(),
                Some(Value::Bool(value)) => value.to_string(),
                Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => "true".to_owned(),
                Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => {
                    "false".to_owned()
                }
                Some(other) => return Err(context(format!("bad bool default {other}"))),
            },
            Type::String => match &field.default {
                Some(Value::String(text)) if text != "null" && !text.is_empty() => {
                    wrap(format!("{text:?}.to_owned()"))
                }
                _ => wrap("String::new()".to_owned()),
            },
            Type::Bytes => wrap("Bytes::new()".to_owned()),
            Type::Uuid => "Uuid::ZERO".to_owned(),
            Type::Records => "None".to_owned(),
            Type::Struct(name) => wrap(format!("{name}::default()")),
            Type::Array(element) if Self::is_inline(element) => wrap("InlineVec::new()".to_owned()),
            Type::Array(_) => wrap("Vec::new()".to_owned()),
        })
    }

    /// True when `#[derive(Default)]` gives the same value as `default_expr`.
    fn default_is_derived(field: &Field) -> Result<bool, String> {
        let expr = Self::default_expr(field)?;
        Ok(matches!(
            expr.as_str(),
            "0" | "0.0"
                | "false"
                | "String::new()"
                | "Bytes::new()"
                | "Uuid::ZERO"
                | "None"
                | "Vec::new()"
                | "InlineVec::new()"
        ) || expr.ends_with("::default()") && !expr.starts_with("Some("))
    }

    /// An expression that is true when the value differs from the default,
    /// written the way clippy prefers for each type.
    fn non_default(field: &Field, value: &str) -> Result<String, String> {
        let default = Self::default_expr(field)?;
        Ok(match default.as_str() {
            "None" => format!("{value}.is_some()"),
            "false" => value.to_owned(),
            "true" => format!("!{value}"),
            "Vec::new()" | "InlineVec::new()" | "String::new()" | "Bytes::new()" => {
                format!("!{value}.is_empty()")
            }
            _ => format!("{value} != {default}"),
        })
    }

    /// The fewest bytes a struct takes on the wire at `version`.
    fn struct_len_min(&self, name: &str, version: i16) -> Result<usize, String> {
        let def = self.struct_def(name)?;
        let flexible = self.spec.flexible.contains(version);
        let mut total = usize::from(flexible);
        for field in &def.fields {
            if field.tag.is_some() || !field.versions.contains(version) {
                continue;
            }
            let compact = match field.flexible {
                Some(own) => own.contains(version),
                None => flexible,
            };
            total += match &field.ty {
                Type::Struct(_) if field.nullable.contains(version) => 1,
                other => self.type_len_min(other, compact, version)?,
            };
        }
        Ok(total)
    }

    fn type_len_min(&self, ty: &Type, compact: bool, version: i16) -> Result<usize, String> {
        if let Some(fixed) = ty.fixed_len() {
            return Ok(fixed);
        }
        Ok(match ty {
            _ if compact && !matches!(ty, Type::Struct(_)) => 1,
            Type::String => 2,
            Type::Bytes | Type::Records | Type::Array(_) => 4,
            Type::Struct(name) => self.struct_len_min(name, version)?,
            _ => 1,
        })
    }

    /// The fewest bytes one element of an array field takes, over every
    /// version in which the field is on the wire.
    fn element_len_min(&self, field: &Field, element: &Type) -> Result<usize, String> {
        let versions = self.present(field).intersect(self.spec.valid);
        let Some((low, high)) = versions.0 else {
            return Ok(0);
        };
        let mut least = usize::MAX;
        for version in low..=high {
            let compact = match field.flexible {
                Some(own) => own.contains(version),
                None => self.spec.flexible.contains(version),
            };
            least = least.min(self.type_len_min(element, compact, version)?);
        }
        Ok(least)
    }

    fn put_method(ty: &Type) -> &'static str {
        match ty {
            Type::Bool => "put_bool",
            Type::Int8 => "put_i8",
            Type::Int16 => "put_i16",
            Type::Uint16 => "put_u16",
            Type::Int32 => "put_i32",
            Type::Uint32 => "put_u32",
            Type::Int64 => "put_i64",
            Type::Float64 => "put_f64",
            _ => "put_uuid",
        }
    }

    fn read_method(ty: &Type) -> &'static str {
        match ty {
            Type::Bool => "bool",
            Type::Int8 => "i8",
            Type::Int16 => "i16",
            Type::Uint16 => "u16",
            Type::Int32 => "i32",
            Type::Uint32 => "u32",
            Type::Int64 => "i64",
            Type::Float64 => "f64",
            _ => "uuid",
        }
    }

    /// A function from an element's big-endian bytes to its value.
    fn from_bytes(ty: &Type) -> &'static str {
        match ty {
            Type::Bool => "|[byte]: [u8; 1]| byte != 0",
            Type::Int8 => "i8::from_be_bytes",
            Type::Int16 => "i16::from_be_bytes",
            Type::Uint16 => "u16::from_be_bytes",
            Type::Int32 => "i32::from_be_bytes",
            Type::Uint32 => "u32::from_be_bytes",
            Type::Int64 => "i64::from_be_bytes",
            Type::Float64 => "f64::from_be_bytes",
            _ => "Uuid::from_bytes",
        }
    }

    /// A statement writing `value` (a place expression such as `self.name`).
    pub fn encode_stmt(&self, field: &Field, value: &str) -> Result<String, String> {
        let compact = self.compact(field);
        let nullable = Self::nullable(field);
        let name = &field.name;
        let option = Self::is_option(field);
        Ok(match &field.ty {
            ty if ty.fixed_len().is_some() => format!("enc.{}({value});", Self::put_method(ty)),
            Type::String if option => {
                format!("enc.put_opt_string({value}.as_deref(), {nullable}, {compact}, {name:?})?;")
            }
            Type::String => format!("enc.put_string(&{value}, {compact})?;"),
            Type::Bytes if option => {
                format!("enc.put_opt_bytes({value}.as_ref(), {nullable}, {compact}, {name:?})?;")
            }
            Type::Bytes => format!("enc.put_bytes(&{value}, {compact})?;"),
            Type::Records => {
                format!("enc.put_opt_records({value}.as_ref(), {nullable}, {compact}, {name:?})?;")
            }
            Type::Struct(_) if option => format!(
                "enc.put_opt_struct({value}.as_ref(), {nullable}, {name:?}, |enc, item| item.encode(enc, version))?;"
            ),
            Type::Struct(_) => format!("{value}.encode(enc, version)?;"),
            Type::Array(element) => {
                let write = Self::element_encode(element, &compact);
                if option {
                    format!(
                        "enc.put_opt_array({value}.as_deref(), {nullable}, {compact}, {name:?}, |enc, item| {write})?;"
                    )
                } else {
                    format!("enc.put_array(&{value}, {compact}, |enc, item| {write})?;")
                }
            }
            other => return Err(format!("cannot encode {other:?}")),
        })
    }

    fn element_encode(element: &Type, compact: &str) -> String {
        match element {
            ty if ty.fixed_len().is_some() => {
                format!("{{ enc.{}(*item); Ok(()) }}", Self::put_method(ty))
            }
            Type::String => format!("enc.put_string(item, {compact})"),
            Type::Bytes => format!("enc.put_bytes(item, {compact})"),
            _ => "item.encode(enc, version)".to_owned(),
        }
    }

    /// An expression for the encoded length of `value`; may use `?`.
    pub fn len_expr(&self, field: &Field, value: &str) -> Result<String, String> {
        let compact = self.compact(field);
        let option = Self::is_option(field);
        Ok(match &field.ty {
            ty if ty.fixed_len().is_some() => ty.fixed_len().unwrap_or(0).to_string(),
            Type::String if option => {
                format!("codec::opt_string_len({value}.as_deref(), {compact})")
            }
            Type::String => format!("codec::string_len(&{value}, {compact})"),
            Type::Bytes if option => format!("codec::opt_bytes_len({value}.as_ref(), {compact})"),
            Type::Bytes => format!("codec::bytes_len(&{value}, {compact})"),
            Type::Records => format!("codec::opt_records_len({value}.as_ref(), {compact})"),
            Type::Struct(_) if option => format!(
                "codec::opt_struct_len({value}.as_ref(), {}, |item| item.encoded_len(version))?",
                Self::nullable(field)
            ),
            Type::Struct(_) => format!("{value}.encoded_len(version)?"),
            Type::Array(element) => {
                let (param, len) = match element.as_ref() {
                    ty if ty.fixed_len().is_some() => {
                        ("_", format!("Ok({})", ty.fixed_len().unwrap_or(0)))
                    }
                    Type::String => ("item", format!("Ok(codec::string_len(item, {compact}))")),
                    Type::Bytes => ("item", format!("Ok(codec::bytes_len(item, {compact}))")),
                    _ => ("item", "item.encoded_len(version)".to_owned()),
                };
                if option {
                    format!("codec::opt_array_len({value}.as_deref(), {compact}, |{param}| {len})?")
                } else {
                    format!("codec::array_len(&{value}, {compact}, |{param}| {len})?")
                }
            }
            other => return Err(format!("cannot size {other:?}")),
        })
    }

    /// An expression reading the field from `dec`; may use `?`.
    pub fn decode_expr(&self, field: &Field) -> Result<String, String> {
        let compact = self.compact(field);
        let nullable = Self::nullable(field);
        let name = &field.name;
        let option = Self::is_option(field);
        Ok(match &field.ty {
            ty if ty.fixed_len().is_some() => format!("dec.{}()?", Self::read_method(ty)),
            Type::String if option => format!("dec.opt_string({nullable}, {compact}, {name:?})?"),
            Type::String => format!("dec.string({compact}, {name:?})?"),
            Type::Bytes if option => format!("dec.opt_bytes({nullable}, {compact}, {name:?})?"),
            Type::Bytes => format!("dec.bytes({compact}, {name:?})?"),
            Type::Records => format!("dec.opt_records({nullable}, {compact}, {name:?})?"),
            Type::Struct(ty) if option => {
                format!("dec.opt_struct({nullable}, |dec| {ty}::decode(dec, version))?")
            }
            Type::Struct(ty) => format!("{ty}::decode(dec, version)?"),
            Type::Array(element) if element.fixed_len().is_some() => {
                let convert = Self::from_bytes(element);
                if option {
                    format!("dec.opt_fixed_array({nullable}, {compact}, {name:?}, {convert})?")
                } else {
                    format!("dec.fixed_array({compact}, {name:?}, {convert})?")
                }
            }
            Type::Array(element) => {
                let min = self.element_len_min(field, element)?;
                if let Type::Struct(ty) = element.as_ref() {
                    // Decoded into elements already in the array (see
                    // `emit_struct`).
                    let read = format!("|dec, item: &mut {ty}| item.decode_into(dec, version)");
                    return Ok(if option {
                        format!(
                            "dec.opt_array_in_place({nullable}, {compact}, {min}, {name:?}, {read})?"
                        )
                    } else {
                        format!("dec.array_in_place({compact}, {min}, {name:?}, {read})?")
                    });
                }
                let read = match element.as_ref() {
                    ty if ty.fixed_len().is_some() => format!("dec.{}()", Self::read_method(ty)),
                    Type::String => format!("dec.string({compact}, {name:?})"),
                    Type::Bytes => format!("dec.bytes({compact}, {name:?})"),
                    other => return Err(format!("cannot decode array of {other:?}")),
                };
                if option {
                    format!("dec.opt_array({nullable}, {compact}, {min}, {name:?}, |dec| {read})?")
                } else {
                    format!("dec.array({compact}, {min}, {name:?}, |dec| {read})?")
                }
            }
            other => return Err(format!("cannot decode {other:?}")),
        })
    }

    fn tagged_fields(def: &StructDef) -> Vec<&Field> {
        let mut tagged: Vec<&Field> = def.fields.iter().filter(|f| f.tag.is_some()).collect();
        tagged.sort_by_key(|f| f.tag);
        tagged
    }

    fn emit_struct(&self, def: &StructDef, out: &mut String) -> Result<(), String> {
        let flexible = self.has_tagged_section();
        let mut derived = true;
        for field in &def.fields {
            derived &= Self::default_is_derived(field)?;
        }
        let derives = if derived {
            "Debug, Clone, PartialEq, Default"
        } else {
            "Debug, Clone, PartialEq"
        };
        writeln!(out, "#[derive({derives})]\npub struct {} {{", def.name).ok();
        for field in &def.fields {
            writeln!(
                out,
                "pub {}: {},",
                field_ident(&field.name),
                Self::rust_type(field)?
            )
            .ok();
        }
        if flexible {
            out.push_str("pub unknown_tagged_fields: Vec<RawTaggedField>,\n");
        }
        out.push_str("}\n\n");

        if !derived {
            writeln!(
                out,
                "impl Default for {} {{ fn default() -> Self {{ Self {{",
                def.name
            )
            .ok();
            for field in &def.fields {
                writeln!(
                    out,
                    "{}: {},",
                    field_ident(&field.name),
                    Self::default_expr(field)?
                )
                .ok();
            }
            if flexible {
                out.push_str("unknown_tagged_fields: Vec::new(),\n");
            }
            out.push_str("} } }\n\n");
        }

        let encode = self.encode_body(def)?;
        let len = self.len_body(def)?;
        writeln!(
            out,
            "impl Encode for {name} {{\n\
             fn encode(&self, {enc}: &mut Encoder, {ver_e}: i16) -> Result<(), EncodeError> {{\n{encode}}}\n\
             fn encoded_len(&self, {ver_l}: i16) -> Result<usize, EncodeError> {{\n{len}}}\n\
             }}\n",
            name = def.name,
            enc = if uses_ident(&encode, "enc") { "enc" } else { "_enc" },
            ver_e = if uses_ident(&encode, "version") { "version" } else { "_version" },
            ver_l = if uses_ident(&len, "version") { "version" } else { "_version" },
        )
        .ok();
        if def.name == self.spec.name {
            // A message's own decode is not inlined: that would pile every
            // message into the API dispatch (twice the crate's build time).
            let decode = self.decode_body(def, false)?;
            writeln!(
                out,
                "impl Decode for {name} {{\n\
                 fn decode(dec: &mut Decoder, {ver}: i16) -> Result<Self, DecodeError> {{\n{decode}}}\n\
                 }}\n",
                name = def.name,
                ver = if uses_ident(&decode, "version") { "version" } else { "_version" },
            )
            .ok();
        } else {
            // A nested struct decodes into a value that is already in
            // place: an array's elements are decoded straight into the
            // array's memory. Built on the stack and then moved, each
            // element's small field stores were read back as wider loads,
            // a store-forwarding stall per element that was half of the
            // Fetch request's decode time.
            let decode = self.decode_body(def, true)?;
            writeln!(
                out,
                "impl {name} {{\n\
                 #[inline]\n\
                 fn decode_into(&mut self, dec: &mut Decoder, {ver}: i16) -> Result<(), DecodeError> {{\n{decode}}}\n\
                 }}\n\n\
                 crate::codec::decode_via_into!({name});\n",
                name = def.name,
                ver = if uses_ident(&decode, "version") { "version" } else { "_version" },
            )
            .ok();
        }
        Ok(())
    }

    /// Prepends `let flexible = ...;` when the body uses it.
    fn with_flexible(&self, body: String) -> String {
        if uses_ident(&body, "flexible") {
            format!("let flexible = {};\n{body}", self.flexible_cond().expr())
        } else {
            body
        }
    }

    /// Wraps the tagged-field section in `if flexible` where needed.
    fn tagged_section(&self, code: String) -> String {
        match self.flexible_cond() {
            Cond::Always => code,
            Cond::Never => String::new(),
            Cond::When(_) => format!("if flexible {{\n{code}}}\n"),
        }
    }

    fn encode_body(&self, def: &StructDef) -> Result<String, String> {
        let mut body = String::new();
        for field in def.fields.iter().filter(|f| f.tag.is_none()) {
            let stmt = self.encode_stmt(field, &format!("self.{}", field_ident(&field.name)))?;
            body.push_str(&Cond::of(field.versions).guard(&stmt));
        }
        if self.has_tagged_section() {
            let tagged: Vec<&Field> = Self::tagged_fields(def)
                .into_iter()
                .filter(|f| !self.present(f).is_empty())
                .collect();
            let mut section = String::new();
            if tagged.is_empty() {
                section.push_str("enc.put_raw_tags(&self.unknown_tagged_fields)?;\n");
            } else {
                let mut count = "self.unknown_tagged_fields.len()".to_owned();
                for field in &tagged {
                    let tag = field.tag.unwrap_or(0);
                    let value = format!("self.{}", field_ident(&field.name));
                    let non_default = Self::non_default(field, &value)?;
                    let when = match Cond::of(field.versions.intersect(field.tagged)) {
                        Cond::When(expr) => format!("{expr} && {non_default}"),
                        _ => non_default,
                    };
                    writeln!(section, "let write_{tag} = {when};").ok();
                    write!(count, " + usize::from(write_{tag})").ok();
                }
                writeln!(section, "enc.put_tag_count({count})?;\nlet mut raw = 0;").ok();
                for field in &tagged {
                    let tag = field.tag.unwrap_or(0);
                    let value = format!("self.{}", field_ident(&field.name));
                    writeln!(
                        section,
                        "if write_{tag} {{\n\
                         enc.put_raw_tags_below(&self.unknown_tagged_fields, &mut raw, {tag})?;\n\
                         enc.put_tag({tag}, {})?;\n{}\n}}",
                        self.len_expr(field, &value)?,
                        self.encode_stmt(field, &value)?
                    )
                    .ok();
                }
                section.push_str(
                    "enc.put_raw_tags_below(&self.unknown_tagged_fields, &mut raw, u64::MAX)?;\n",
                );
            }
            body.push_str(&self.tagged_section(section));
        }
        body.push_str("Ok(())\n");
        Ok(self.with_flexible(body))
    }

    fn len_body(&self, def: &StructDef) -> Result<String, String> {
        let mut body = String::new();
        for field in def.fields.iter().filter(|f| f.tag.is_none()) {
            let len = self.len_expr(field, &format!("self.{}", field_ident(&field.name)))?;
            body.push_str(&Cond::of(field.versions).guard(&format!("len += {len};")));
        }
        if self.has_tagged_section() {
            let tagged: Vec<&Field> = Self::tagged_fields(def)
                .into_iter()
                .filter(|f| !self.present(f).is_empty())
                .collect();
            let mut section = String::new();
            if tagged.is_empty() {
                section
                    .push_str("len += codec::raw_tags_section_len(&self.unknown_tagged_fields);\n");
            } else {
                section.push_str(
                    "let mut tags = self.unknown_tagged_fields.len();\n\
                     let mut tagged_len = codec::raw_tags_len(&self.unknown_tagged_fields);\n",
                );
                for field in &tagged {
                    let tag = field.tag.unwrap_or(0);
                    let value = format!("self.{}", field_ident(&field.name));
                    let non_default = Self::non_default(field, &value)?;
                    let when = match Cond::of(field.versions.intersect(field.tagged)) {
                        Cond::When(expr) => format!("{expr} && {non_default}"),
                        _ => non_default,
                    };
                    writeln!(
                        section,
                        "if {when} {{ tags += 1; tagged_len += codec::tag_len({tag}, {}); }}",
                        self.len_expr(field, &value)?
                    )
                    .ok();
                }
                section.push_str("len += codec::tag_count_len(tags) + tagged_len;\n");
            }
            body.push_str(&self.tagged_section(section));
        }
        if !body.contains("len +=") {
            return Ok("Ok(0)\n".to_owned());
        }
        Ok(self.with_flexible(format!("let mut len = 0;\n{body}Ok(len)\n")))
    }

    /// The decode of `def`'s fields: returning a new value, or, `into`,
    /// storing them in `self`.
    fn decode_body(&self, def: &StructDef, into: bool) -> Result<String, String> {
        let mut body = String::from("dec.enter()?;\n");
        for field in def.fields.iter().filter(|f| f.tag.is_none()) {
            // Decoding into `self`, a field is stored as soon as it is read:
            // kept in a local until the end, a value of several words (a
            // `Bytes`, an `Option`) went to the stack and was copied with
            // loads wider than its stores (Produce decode 1.4x -> 1.6x the
            // peer, see `emit_struct`).
            let target = if into {
                format!("self.{}", field_ident(&field.name))
            } else {
                format!("let {}", field_local(&field.name))
            };
            let read = self.decode_expr(field)?;
            let line = match Cond::of(field.versions) {
                Cond::Always => format!("{target} = {read};"),
                Cond::Never => format!("{target} = {};", Self::default_expr(field)?),
                Cond::When(expr) => format!(
                    "{target} = if {expr} {{ {read} }} else {{ {} }};",
                    Self::default_expr(field)?
                ),
            };
            writeln!(body, "{line}").ok();
        }
        if self.has_tagged_section() {
            let mut arms = String::new();
            for field in Self::tagged_fields(def) {
                let local = field_local(&field.name);
                let default = Self::default_expr(field)?;
                if self.present(field).is_empty() {
                    writeln!(body, "let {local} = {default};").ok();
                    continue;
                }
                writeln!(body, "let mut {local} = {default};").ok();
                let tag = field.tag.unwrap_or(0);
                let guard = match Cond::of(field.versions.intersect(field.tagged)) {
                    Cond::When(expr) => format!(" if {expr}"),
                    _ => String::new(),
                };
                writeln!(
                    arms,
                    "{tag}{guard} => {{ {local} = {}; Ok(true) }}",
                    self.decode_expr(field)?
                )
                .ok();
            }
            let closure = if arms.is_empty() {
                "|_, _| Ok(false)".to_owned()
            } else {
                format!("|tag, dec| match tag {{\n{arms}_ => Ok(false),\n}}")
            };
            let read = format!("dec.tagged_fields({closure})?");
            let line = match self.flexible_cond() {
                Cond::When(_) => format!(
                    "let unknown_tagged_fields = if flexible {{ {read} }} else {{ Vec::new() }};"
                ),
                _ => format!("let unknown_tagged_fields = {read};"),
            };
            writeln!(body, "{line}").ok();
        }
        body.push_str("dec.leave();\n");
        if into {
            for field in def.fields.iter().filter(|f| f.tag.is_some()) {
                let ident = field_ident(&field.name);
                let local = field_local(&field.name);
                writeln!(body, "self.{ident} = {local};").ok();
            }
            if self.has_tagged_section() {
                body.push_str("self.unknown_tagged_fields = unknown_tagged_fields;\n");
            }
            body.push_str("Ok(())\n");
            return Ok(self.with_flexible(body));
        }
        body.push_str("Ok(Self {\n");
        for field in &def.fields {
            let ident = field_ident(&field.name);
            let local = field_local(&field.name);
            if ident == local {
                writeln!(body, "{ident},").ok();
            } else {
                writeln!(body, "{ident}: {local},").ok();
            }
        }
        if self.has_tagged_section() {
            body.push_str("unknown_tagged_fields,\n");
        }
        body.push_str("})\n");
        Ok(self.with_flexible(body))
    }

    /// The whole module for this spec file.
    pub fn emit_module(&self) -> Result<String, String> {
        let mut code = String::new();
        for def in &self.structs {
            self.emit_struct(def, &mut code)?;
        }
        let mut codec_items = vec![];
        if uses_ident(&code, "codec") {
            codec_items.push("self");
        }
        codec_items.extend([
            "Decode",
            "DecodeError",
            "Decoder",
            "Encode",
            "EncodeError",
            "Encoder",
        ]);
        if uses_ident(&code, "InlineVec") {
            codec_items.push("InlineVec");
        }
        if uses_ident(&code, "RawTaggedField") {
            codec_items.push("RawTaggedField");
        }
        let mut head = String::from(
            "// @generated by rill-codegen from Kafka's message specs; do not edit.\n\n",
        );
        if uses_ident(&code, "Bytes") {
            head.push_str("use bytes::Bytes;\n\n");
        }
        writeln!(head, "use crate::codec::{{{}}};", codec_items.join(", ")).ok();
        if uses_ident(&code, "Records") {
            head.push_str("use crate::records::Records;\n");
        }
        if uses_ident(&code, "Uuid") {
            head.push_str("use crate::uuid::Uuid;\n");
        }
        head.push('\n');
        head.push_str(&code);
        Ok(head)
    }
}
