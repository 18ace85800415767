//! The embedders the administrator defined, by name.
//!
//! A text collection names its embedder; the name is resolved here, against the definitions
//! `vexfsd` was started with (`--embedder NAME=SPEC`, plus the builtin ones). No request can
//! name a spec: whatever a caller sends is only ever a key into this table, so a caller cannot
//! make the daemon load a model from a path or connect to an address of its choosing.
//!
//! Loading is lazy and per name: the table's lock is held only to find a name's slot, and a slow
//! load (an Ollama server probed for its dimension) holds only that slot's lock, so it never
//! delays callers of other embedders.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{from_spec, EmbedError, Embedder, EmbedderSpec, MINILM_NAME, SPEC_DEFAULT};

/// The longest embedder name.
pub const NAME_MAX: usize = 63;

/// The builtin embedders, always defined: (name, spec).
pub const BUILTIN: &[(&str, &str)] = &[(MINILM_NAME, SPEC_DEFAULT)];

/// One defined embedder: its spec and, once loaded, the embedder.
struct Slot {
    spec: String,
    loaded: Mutex<Option<Arc<dyn Embedder>>>,
}

/// The defined embedders and the daemon's default among them.
pub struct Registry {
    slots: BTreeMap<String, Arc<Slot>>,
    default: String,
    models_dir: PathBuf,
}

/// Checks an embedder name: 1..=63 bytes of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(format!(
            "embedder name '{name}' is not 1..={NAME_MAX} characters of a-z, 0-9, '.', '_', '-' starting with a letter or digit"
        ))
    }
}

/// Parses one `--embedder NAME=SPEC` definition.
pub fn parse_definition(definition: &str) -> Result<(String, String), String> {
    let Some((name, spec)) = definition.split_once('=') else {
        return Err(format!(
            "'{definition}' is not NAME=SPEC (for example ollama=ollama:http://127.0.0.1:11434:nomic-embed-text)"
        ));
    };
    check_name(name)?;
    EmbedderSpec::parse(spec).map_err(|e| e.to_string())?;
    Ok((name.to_string(), spec.to_string()))
}

impl Registry {
    /// The builtin embedders plus `definitions` (name, spec), with `default` the embedder of text
    /// collections created without one. A definition may replace a builtin name.
    pub fn new(definitions: &[(String, String)], default: &str, models_dir: PathBuf) -> Result<Registry, String> {
        let mut slots = BTreeMap::new();
        for (name, spec) in
            BUILTIN.iter().map(|(n, s)| (n.to_string(), s.to_string())).chain(definitions.iter().cloned())
        {
            check_name(&name)?;
            EmbedderSpec::parse(&spec).map_err(|e| e.to_string())?;
            slots.insert(name, Arc::new(Slot { spec, loaded: Mutex::new(None) }));
        }
        if !slots.contains_key(default) {
            let names: Vec<&str> = slots.keys().map(String::as_str).collect();
            return Err(format!("default embedder '{default}' is not defined (defined: {})", names.join(", ")));
        }
        Ok(Registry { slots, default: default.to_string(), models_dir })
    }

    /// The builtin embedders only, the builtin model the default.
    pub fn builtin(models_dir: PathBuf) -> Registry {
        Registry::new(&[], MINILM_NAME, models_dir).expect("the builtin definitions are valid")
    }

    /// The name of the embedder of collections created without one.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The names defined, in order.
    pub fn names(&self) -> Vec<&str> {
        self.slots.keys().map(String::as_str).collect()
    }

    /// The defined name that `stored` refers to: `stored` itself when it is a name, or the name
    /// defined with exactly that spec (collections made before embedders were named stored the
    /// spec). The error lists what is defined.
    pub fn resolve(&self, stored: &str) -> Result<String, EmbedError> {
        if self.slots.contains_key(stored) {
            return Ok(stored.to_string());
        }
        self.slots
            .iter()
            .find(|(_, slot)| slot.spec == stored)
            .map(|(name, _)| name.clone())
            .ok_or_else(|| EmbedError::Unknown { name: stored.to_string(), defined: self.names().join(", ") })
    }

    /// The embedder `name` (or the spec of one, see [`Registry::resolve`]), loaded on first use.
    /// A failed load is not remembered: the next call tries again.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Embedder>, EmbedError> {
        let name = self.resolve(name)?;
        let slot = &self.slots[&name];
        let mut loaded = slot.loaded.lock();
        if let Some(embedder) = loaded.as_ref() {
            return Ok(Arc::clone(embedder));
        }
        let embedder: Arc<dyn Embedder> = Arc::from(from_spec(&slot.spec, &self.models_dir)?);
        tracing::info!(name, spec = slot.spec, dim = embedder.dim(), "embedder loaded");
        *loaded = Some(Arc::clone(&embedder));
        Ok(embedder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "all-minilm-l6-v2", "ollama.nomic_1", "0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "A", "a b", "a:b", "a/b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn definitions_parse() {
        let (name, spec) = parse_definition("ol=ollama:http://127.0.0.1:11434:m").unwrap();
        assert_eq!((name.as_str(), spec.as_str()), ("ol", "ollama:http://127.0.0.1:11434:m"));
        assert!(parse_definition("ollama:http://127.0.0.1:11434:m").unwrap_err().contains("NAME=SPEC"));
        assert!(parse_definition("ol=gpt:4").unwrap_err().contains("bad embedder spec"));
        assert!(parse_definition("Bad=builtin:all-minilm-l6-v2").unwrap_err().contains("not 1..=63"));
    }

    #[test]
    fn names_and_stored_specs_resolve_to_defined_embedders_only() {
        let defs = vec![("ol".to_string(), "ollama:http://127.0.0.1:9:m".to_string())];
        let registry = Registry::new(&defs, "ol", PathBuf::from("/nonexistent")).unwrap();
        assert_eq!(registry.default_name(), "ol");
        assert_eq!(registry.names(), vec!["all-minilm-l6-v2", "ol"]);
        assert_eq!(registry.resolve("ol").unwrap(), "ol");
        assert_eq!(registry.resolve(SPEC_DEFAULT).unwrap(), MINILM_NAME);
        assert_eq!(registry.resolve("ollama:http://127.0.0.1:9:m").unwrap(), "ol");
        let unknown = registry.resolve("ollama:http://10.0.0.1:80/admin:m").unwrap_err();
        assert!(matches!(unknown, EmbedError::Unknown { .. }));
        assert!(unknown.to_string().contains("all-minilm-l6-v2, ol"), "{unknown}");
        assert!(Registry::new(&defs, "nope", PathBuf::new()).err().unwrap().contains("not defined"));
    }
}
