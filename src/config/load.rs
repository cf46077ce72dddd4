//! Loading: every source turned into a [`figment`] layer that remembers where it came from,
//! merged in order (defaults, file, environment, flags), extracted into [`Settings`] and
//! validated; a refusal is reported with its full dotted key and its origin.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::validate::Problem;
use super::{ConfigError, Overrides, Settings};

/// The embedded defaults; the file is the documentation of every key.
const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables read as settings.
pub const ENV_PREFIX: &str = "SESSION_MANAGER_";

/// The prefixed variables that are not settings: the server hands them to its agents (how to
/// reach it, and the mark of its processes), and an agent may run `session-manager hook`.
const ENV_NOT_SETTINGS: [&str; 2] = ["SESSION_MANAGER_URL", "SESSION_MANAGER_INSTANCE"];

/// Settings whose value is text: an environment variable gives them its value verbatim.
const TEXT_KEYS: [&str; 4] = [
    "server.token",
    "server.bind",
    "storage.data_dir",
    "logs.level",
];

/// Separator between nested keys in an environment variable name.
const ENV_SEPARATOR: &str = "__";

impl Settings {
    /// Loads the settings from every source (see the module documentation) and validates them,
    /// so the rest of the server can trust every value.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_from(overrides, std::env::vars_os())
    }

    pub(super) fn load_from<I>(overrides: &Overrides, env: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let mut figment = Figment::new().merge(Layer::toml("built-in defaults", DEFAULTS)?);
        if let Some(path) = &overrides.config_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            figment = figment.merge(Layer::toml(
                &format!("config file {}", path.display()),
                &text,
            )?);
        }
        for layer in env_layers(env)? {
            figment = figment.merge(layer);
        }
        for layer in flag_layers(overrides)? {
            figment = figment.merge(layer);
        }
        let settings: Settings = figment.extract().map_err(invalid_setting)?;
        settings
            .validate()
            .map_err(|Problem { key, problem }| ConfigError::Invalid {
                origin: figment
                    .find_metadata(lookup_key(&key))
                    .map(|metadata| metadata.name.to_string()),
                key,
                problem,
            })?;
        Ok(settings)
    }
}

/// `~` and `~/…` are relative to `home`; `None` when that is needed but unknown.
pub(super) fn expand_home(path: &Path, home: Option<&Path>) -> Option<PathBuf> {
    match path.strip_prefix("~") {
        Ok(rest) if rest.as_os_str().is_empty() => home.map(Path::to_path_buf),
        Ok(rest) => home.map(|home| home.join(rest)),
        Err(_) => Some(path.to_path_buf()),
    }
}

/// One source of settings, already parsed, named for error messages.
struct Layer {
    origin: String,
    dict: Dict,
}

impl Layer {
    fn new(origin: String, mut dict: Dict) -> Result<Layer, ConfigError> {
        canonicalize_templates(&mut dict, &origin)?;
        Ok(Layer { origin, dict })
    }

    fn toml(origin: &str, text: &str) -> Result<Layer, ConfigError> {
        let dict = Toml::from_str::<Dict>(text).map_err(|source| ConfigError::Syntax {
            origin: origin.to_owned(),
            source,
        })?;
        Layer::new(origin.to_owned(), dict)
    }

    fn value(origin: String, key: &str, value: Value) -> Result<Layer, ConfigError> {
        match figment::util::nest(key, value) {
            Value::Dict(_, dict) => Layer::new(origin, dict),
            _ => Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: Some(origin),
                problem: "does not name a setting".to_owned(),
            }),
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

/// Agent types are case-insensitive; one spelling per type lets a file's `[agents.templates.
/// backend]` and an environment variable's `BACKEND` land in the same table.
fn canonicalize_templates(dict: &mut Dict, origin: &str) -> Result<(), ConfigError> {
    let Some(Value::Dict(_, agents)) = dict.get_mut("agents") else {
        return Ok(());
    };
    let Some(Value::Dict(_, templates)) = agents.get_mut("templates") else {
        return Ok(());
    };
    for (name, template) in std::mem::take(templates) {
        let canonical = name.to_ascii_uppercase();
        if templates.insert(canonical.clone(), template).is_some() {
            return Err(ConfigError::Invalid {
                key: format!("agents.templates.{canonical}"),
                origin: Some(origin.to_owned()),
                problem: "is given more than once (agent types ignore case)".to_owned(),
            });
        }
    }
    Ok(())
}

/// One layer per `SESSION_MANAGER_*` variable, in name order, so an error names the variable.
fn env_layers<I>(env: I) -> Result<Vec<Layer>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut vars: Vec<(String, OsString)> = env
        .into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .filter(|(name, _)| {
            name.starts_with(ENV_PREFIX) && !ENV_NOT_SETTINGS.contains(&name.as_str())
        })
        .collect();
    vars.sort();
    vars.into_iter()
        .map(|(name, value)| {
            let problem = |problem: &str| ConfigError::Environment {
                name: name.clone(),
                problem: problem.to_owned(),
            };
            let segments: Vec<String> = name[ENV_PREFIX.len()..]
                .split(ENV_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            if segments.iter().any(|s| s.is_empty() || s.contains('.')) {
                return Err(problem(
                    "does not name a setting (expected SESSION_MANAGER_SECTION__KEY)",
                ));
            }
            let value = value
                .into_string()
                .map_err(|_| problem("is not valid UTF-8"))?;
            let key = segments.join(".");
            // Text settings are taken word for word: parsed, a token `0042` would become the
            // number 42 and a data_dir `2024` would be refused.
            let value = if TEXT_KEYS.contains(&key.as_str()) {
                Value::from(value)
            } else {
                let Ok(parsed) = value.parse::<Value>();
                parsed
            };
            Layer::value(format!("environment variable {name}"), &key, value)
        })
        .collect()
}

fn flag_layers(overrides: &Overrides) -> Result<Vec<Layer>, ConfigError> {
    let mut layers = Vec::new();
    let flag = |name: &str| format!("command-line flag --{name}");
    if let Some(bind) = &overrides.bind {
        layers.push(Layer::value(
            flag("bind"),
            "server.bind",
            Value::from(bind.as_str()),
        )?);
    }
    if let Some(port) = overrides.port {
        layers.push(Layer::value(
            flag("port"),
            "server.port",
            Value::from(port),
        )?);
    }
    if let Some(data_dir) = &overrides.data_dir {
        let data_dir = data_dir.to_str().ok_or_else(|| ConfigError::Invalid {
            key: "storage.data_dir".to_owned(),
            origin: Some(flag("data-dir")),
            problem: "is not valid UTF-8".to_owned(),
        })?;
        layers.push(Layer::value(
            flag("data-dir"),
            "storage.data_dir",
            Value::from(data_dir),
        )?);
    }
    if let Some(level) = &overrides.log_level {
        layers.push(Layer::value(
            flag("log-level"),
            "logs.level",
            Value::from(level.as_str()),
        )?);
    }
    Ok(layers)
}

/// The key figment knows a value under: list indices are not keys of their own.
fn lookup_key(key: &str) -> &str {
    key.split('[').next().unwrap_or(key)
}

/// Names the key (full dotted path) and the source of a value serde refused.
fn invalid_setting(error: figment::Error) -> ConfigError {
    let mut path = error.path.clone();
    if let Kind::MissingField(field) = &error.kind {
        path.push(field.to_string());
    }
    let problem = match &error.kind {
        Kind::UnknownField(_, expected) => {
            format!("unknown key, expected one of {}", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            format!(
                "unknown value `{found}`, expected one of {}",
                expected.join(", ")
            )
        }
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            format!("expected {expected}, found {found}")
        }
        Kind::MissingField(_) => "is required".to_owned(),
        other => other.to_string(),
    };
    ConfigError::Invalid {
        key: dotted(&path),
        origin: error.metadata.map(|metadata| metadata.name.to_string()),
        problem,
    }
}

/// `["server", "allowed_origins", "0"]` → `server.allowed_origins[0]`.
pub(super) fn dotted(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !key.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}
