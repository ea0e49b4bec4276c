//! Turning Kafka's PascalCase names into Rust identifiers.

/// `MetadataRequest` → `metadata_request`, `KRaftVersion` → `k_raft_version`,
/// `timeoutMs` → `timeout_ms`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (index, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            let previous = chars[index - 1];
            let next_is_lower = chars.get(index + 1).is_some_and(|n| n.is_ascii_lowercase());
            if previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv",
    "typeof", "unsized", "virtual", "yield", "try",
];

/// The Rust field name for a spec field: snake case, raw if a keyword.
pub fn field_ident(name: &str) -> String {
    let snake = snake_case(name);
    if KEYWORDS.contains(&snake.as_str()) {
        format!("r#{snake}")
    } else {
        snake
    }
}

/// Names the generated functions use for their own variables; a local for a
/// field with one of these names gets a prefix.
const RESERVED_LOCALS: &[&str] = &[
    "dec", "enc", "version", "flexible", "tag", "len", "item", "value", "raw", "tags", "rng",
];

/// The local variable holding a field's value while decoding.
pub fn field_local(name: &str) -> String {
    let ident = field_ident(name);
    if RESERVED_LOCALS.contains(&ident.as_str()) {
        format!("field_{ident}")
    } else {
        ident
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_handles_acronyms_and_lower_starts() {
        assert_eq!(snake_case("MetadataRequest"), "metadata_request");
        assert_eq!(snake_case("KRaftVersionFeature"), "k_raft_version_feature");
        assert_eq!(snake_case("timeoutMs"), "timeout_ms");
        assert_eq!(snake_case("TopicId"), "topic_id");
        assert_eq!(snake_case("ZkVersion"), "zk_version");
        assert_eq!(field_ident("Type"), "r#type");
        assert_eq!(field_local("Version"), "field_version");
    }
}
