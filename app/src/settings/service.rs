//! What the page's settings requests do: show, check, save, reset.
//!
//! Every call reads or writes files (a save fsyncs twice), so callers on
//! the async runtime run them on the disk thread. Saves are one at a time;
//! a save that changes the file asks for a restart ([`Service::restart_requested`]),
//! which the process's monitor carries out (decision 0007: a clean re-exec).

use super::changes::{self, Change, Entry};
use super::sections::{self, SectionError};
use super::{cameras, secrets, Checker, ConfigFile, SettingsError, Verdict};
use crate::config::{redact_url, CameraConfig, ConfigError, ConfigErrors};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Change-log entries the page lists.
pub const CHANGES_SHOWN: usize = 20;

/// The settings of the running process.
pub struct Service {
    file: ConfigFile,
    checker: Box<dyn Checker>,
    /// Why the start fell back on the last good file (until a save).
    fallback: Mutex<Option<Vec<String>>>,
    restart: AtomicBool,
    saving: Mutex<()>,
    /// Unix seconds now (injected so the log's times can be tested).
    now: fn() -> u64,
}

/// `GET /api/settings`.
#[derive(Debug, Serialize)]
pub struct View {
    /// The file.
    pub path: String,
    /// Whether a factory reset is possible.
    pub factory: bool,
    /// The text, secrets hidden.
    pub toml: String,
    /// The cameras as the form lists them.
    pub cameras: Vec<cameras::CameraView>,
    /// The section forms: each key's schema and value, secrets hidden.
    pub sections: sections::Listing,
    /// Why the start fell back on the last good file.
    pub fallback: Option<Vec<String>>,
    /// The running file's budget.
    pub budget: Option<Verdict>,
    /// The last changes, newest first.
    pub changes: Vec<Entry>,
}

/// One located problem, for the page to show beside its field.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `camera[1].detect_fps` (empty for a syntax error).
    pub key: String,
    /// 1-based line in the text.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The answer to a check or a save.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Valid and within the budget (and, for a save, saved).
    pub ok: bool,
    /// A save changed the file; the process restarts to apply it.
    pub restarting: bool,
    /// One line summing up why not.
    pub error: Option<String>,
    /// Every problem, located.
    pub errors: Vec<Problem>,
    /// The budget, when the text parsed.
    pub budget: Option<Verdict>,
    /// What a save changed.
    pub changes: Vec<Change>,
}

impl Outcome {
    fn refused(error: String, errors: Vec<Problem>, budget: Option<Verdict>) -> Outcome {
        Outcome {
            ok: false,
            restarting: false,
            error: Some(error),
            errors,
            budget,
            changes: Vec::new(),
        }
    }
}

impl From<&ConfigError> for Problem {
    fn from(e: &ConfigError) -> Problem {
        Problem {
            key: e.key.clone(),
            line: e.line,
            message: e.message.clone(),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Service {
    /// The settings of a process started from `file`; `fallback` is why it
    /// runs on the last good file instead, if it does.
    pub fn new(
        file: ConfigFile,
        checker: Box<dyn Checker>,
        fallback: Option<&ConfigErrors>,
    ) -> Service {
        Service {
            file,
            checker,
            fallback: Mutex::new(fallback.map(|e| e.0.iter().map(ToString::to_string).collect())),
            restart: AtomicBool::new(false),
            saving: Mutex::new(()),
            now: unix_now,
        }
    }

    /// Whether a save asked for the process to restart.
    pub fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::Acquire)
    }

    /// Why the start fell back on the last good file, if it did.
    pub fn fallback(&self) -> Option<Vec<String>> {
        self.fallback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The text edits start from: the file, or the last good one while the
    /// start fell back on it because the file is broken (so the page shows
    /// and edits what runs, and a save replaces the broken file).
    fn base(&self) -> Result<String, SettingsError> {
        if self.fallback().is_some() {
            if let Ok(good) = std::fs::read_to_string(self.file.sibling(".good")) {
                return Ok(good);
            }
        }
        self.file.read()
    }

    /// The text with its secrets hidden, for a download.
    pub fn export(&self) -> Result<String, SettingsError> {
        let text = self.base()?;
        secrets::redact(&text).ok_or_else(|| match super::parse(&text, &self.file.path) {
            Err(e) => e,
            Ok(_) => SettingsError::Invalid(ConfigErrors(Vec::new())),
        })
    }

    /// The file as the page shows it.
    pub fn view(&self) -> Result<View, SettingsError> {
        let text = self.base()?;
        let toml = secrets::redact(&text).unwrap_or_default();
        let budget = super::parse(&text, &self.file.path)
            .ok()
            .map(|c| self.checker.check(&c));
        let changes = changes::last(&self.file.log_path(), CHANGES_SHOWN).map_err(|source| {
            SettingsError::Io {
                action: "read",
                path: self.file.log_path(),
                source,
            }
        })?;
        Ok(View {
            path: self.file.path.display().to_string(),
            factory: self.file.factory.is_some(),
            cameras: cameras::list(&toml),
            sections: sections::list(&toml),
            toml,
            fallback: self.fallback(),
            budget,
            changes,
        })
    }

    /// Checks `text` (hidden secrets meaning the current ones) as a save
    /// would, changing nothing.
    pub fn check(&self, text: &str) -> Result<Outcome, SettingsError> {
        let current = self.base()?;
        Ok(self.judge(&secrets::restore(text, &current)).0)
    }

    /// Checks the current file with its cameras replaced by `forms`.
    pub fn check_cameras(&self, forms: &[cameras::CameraForm]) -> Result<Outcome, SettingsError> {
        let current = self.base()?;
        Ok(match cameras::with_cameras(&current, forms) {
            Ok(text) => self.judge(&text).0,
            Err(e) => syntax(&e),
        })
    }

    /// The camera `form` as a save would configure it, for the camera test:
    /// written alone into the current file (its saved table kept when one
    /// has its `was` or, failing that, its name, so hidden secrets come
    /// back) and parsed, enabled; or the parser's problems, with the URL's
    /// credentials hidden. Nothing is saved and no budget is checked.
    pub fn camera_for_test(
        &self,
        form: &cameras::CameraForm,
    ) -> Result<Result<CameraConfig, Vec<Problem>>, SettingsError> {
        let current = self.base()?;
        let mut form = form.clone();
        form.enabled = true;
        form.was = form.was.or_else(|| Some(form.name.clone()));
        let text = match cameras::with_cameras(&current, std::slice::from_ref(&form)) {
            Ok(text) => text,
            Err(e) => {
                return Ok(Err(vec![Problem {
                    key: String::new(),
                    line: None,
                    message: syntax(&e).error.unwrap_or_default(),
                }]))
            }
        };
        match super::parse(&text, &self.file.path) {
            Ok(mut config) if !config.cameras.is_empty() => Ok(Ok(config.cameras.remove(0))),
            Ok(_) => Ok(Err(vec![Problem {
                key: "camera[0]".into(),
                line: None,
                message: "the camera did not parse as an enabled camera".into(),
            }])),
            Err(SettingsError::Invalid(errors)) => {
                let raw = cameras::raw_url(&text, 0);
                Ok(Err(errors
                    .0
                    .iter()
                    .map(|e| {
                        let mut p = Problem::from(e);
                        if let Some(raw) = raw.as_deref().filter(|r| !r.is_empty()) {
                            p.message = p.message.replace(raw, &redact_url(raw));
                        }
                        p
                    })
                    .collect()))
            }
            Err(e) => Err(e),
        }
    }

    /// Saves `text` if it is valid and within the budget, logs what changed
    /// and asks for a restart; an unchanged text is accepted without either.
    pub fn save(&self, text: &str, via: &str) -> Result<Outcome, SettingsError> {
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.base()?;
        self.save_locked(&current, secrets::restore(text, &current), via)
    }

    /// Saves the current file with its cameras replaced by `forms`.
    pub fn save_cameras(&self, forms: &[cameras::CameraForm]) -> Result<Outcome, SettingsError> {
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.base()?;
        match cameras::with_cameras(&current, forms) {
            Ok(text) => self.save_locked(&current, text, "cameras"),
            Err(e) => Ok(syntax(&e)),
        }
    }

    /// Checks the current file with the keys of `section` set to `values`.
    pub fn check_section(
        &self,
        section: &str,
        values: &Map<String, Json>,
    ) -> Result<Outcome, SettingsError> {
        let current = self.base()?;
        Ok(match sections::with_section(&current, section, values) {
            Ok(text) => self.judge(&text).0,
            Err(e) => not_written(&e),
        })
    }

    /// Saves the current file with the keys of `section` set to `values`.
    pub fn save_section(
        &self,
        section: &str,
        values: &Map<String, Json>,
    ) -> Result<Outcome, SettingsError> {
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.base()?;
        match sections::with_section(&current, section, values) {
            Ok(text) => self.save_locked(&current, text, &format!("section:{section}")),
            Err(e) => Ok(not_written(&e)),
        }
    }

    /// Restores the factory configuration.
    pub fn factory_reset(&self) -> Result<Outcome, SettingsError> {
        let text = self.file.factory_text()?;
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.base().unwrap_or_default();
        self.save_locked(&current, text, "factory-reset")
    }

    fn save_locked(
        &self,
        current: &str,
        text: String,
        via: &str,
    ) -> Result<Outcome, SettingsError> {
        let (mut outcome, valid) = self.judge(&text);
        if !valid {
            return Ok(outcome);
        }
        // Unchanged: nothing to write or restart, unless the file on disk
        // is the broken one the start fell back from.
        if text == current && self.fallback().is_none() {
            return Ok(outcome);
        }
        let changed = changes::diff(current, &text);
        self.file.save(&text)?;
        let entry = changes::entry((self.now)(), via, changed.clone());
        if let Err(e) = changes::append(&self.file.log_path(), &entry) {
            // The save stands; only its record is missing.
            log::error!("config change log {}: {e}", self.file.log_path().display());
        }
        for c in &changed {
            log::info!(
                "config changed ({via}): {} {} -> {}",
                c.key,
                c.old.as_deref().unwrap_or("(unset)"),
                c.new.as_deref().unwrap_or("(unset)")
            );
        }
        *self.fallback.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.restart.store(true, Ordering::Release);
        outcome.restarting = true;
        outcome.changes = changed;
        Ok(outcome)
    }

    /// The outcome of `text`, and whether it may be saved.
    fn judge(&self, text: &str) -> (Outcome, bool) {
        let config = match super::parse(text, &self.file.path) {
            Ok(c) => c,
            Err(SettingsError::Invalid(errors)) => {
                let summary = format!(
                    "{} problem(s); first: {}",
                    errors.0.len(),
                    errors
                        .0
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                );
                let problems = errors.0.iter().map(Problem::from).collect();
                return (Outcome::refused(summary, problems, None), false);
            }
            Err(e) => return (Outcome::refused(e.to_string(), Vec::new(), None), false),
        };
        let verdict = self.checker.check(&config);
        if let Some(problem) = &verdict.problem {
            let p = Problem {
                key: String::new(),
                line: None,
                message: problem.clone(),
            };
            return (
                Outcome::refused(problem.clone(), vec![p], Some(verdict)),
                false,
            );
        }
        if !verdict.accepted() {
            let message = format!(
                "the memory budget ({} bytes) exceeds memory_limit ({} bytes): lower pool sizes, remove a camera or raise the limit",
                verdict.total, verdict.limit
            );
            let p = Problem {
                key: "memory_limit".into(),
                line: None,
                message: message.clone(),
            };
            return (Outcome::refused(message, vec![p], Some(verdict)), false);
        }
        let ok = Outcome {
            ok: true,
            restarting: false,
            error: None,
            errors: Vec::new(),
            budget: Some(verdict),
            changes: Vec::new(),
        };
        (ok, true)
    }
}

/// A form whose values could not even be written into the text.
fn not_written(e: &SectionError) -> Outcome {
    match e {
        SectionError::Syntax(e) => syntax(e),
        _ => {
            let p = Problem {
                key: e.key().to_owned(),
                line: None,
                message: e.to_string(),
            };
            Outcome::refused(e.to_string(), vec![p], None)
        }
    }
}

fn syntax(e: &toml_edit::TomlError) -> Outcome {
    let message = format!("the current file is not TOML: {}", e.message());
    Outcome::refused(message.clone(), Vec::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, HIDDEN};
    use crate::test_dir::TempDir;

    /// Prices a configuration at 100 MiB per camera.
    struct PerCamera;
    impl Checker for PerCamera {
        fn check(&self, config: &Config) -> Verdict {
            Verdict {
                total: 100 * (1 << 20) * config.cameras.len() as u64,
                limit: config.memory_limit,
                lines: vec![format!("cameras {}", config.cameras.len())],
                problem: None,
            }
        }
    }

    const START: &str = "memory_limit = \"150MiB\"\n[[camera]]\nname = \"a\"\nurl = \"rtsp://u:secret@10.0.0.5/s\"\n";

    fn service(dir: &TempDir) -> Service {
        let file = ConfigFile {
            path: dir.0.join("config.toml"),
            factory: Some(dir.0.join("factory.toml")),
        };
        std::fs::write(file.factory.as_ref().unwrap(), START).unwrap();
        file.load().unwrap();
        Service::new(file, Box::new(PerCamera), None)
    }

    #[test]
    fn a_save_over_the_budget_or_invalid_changes_nothing() {
        let dir = TempDir::new("service-refuse");
        let s = service(&dir);
        let view = s.view().unwrap();
        assert!(!view.toml.contains("secret"));
        let three = format!(
            "{}[[camera]]\nname = \"b\"\nurl = \"rtsp://10.0.0.6/s\"\n[[camera]]\nname = \"c\"\nurl = \"rtsp://10.0.0.7/s\"\n",
            view.toml
        );
        let over = s.save(&three, "page").unwrap();
        assert!(!over.ok && !over.restarting);
        assert_eq!(over.errors[0].key, "memory_limit");
        assert_eq!(over.budget.unwrap().total, 300 << 20);
        let bad = s
            .save("memory_limit = 5\n[[camera]]\nurl = 7\n", "page")
            .unwrap();
        assert!(!bad.ok);
        assert_eq!(bad.errors[0].key, "camera[0].url");
        assert_eq!(bad.errors[0].line, Some(3));
        assert_eq!(s.file.read().unwrap(), START);
        assert!(!s.restart_requested());
        assert!(s.view().unwrap().changes.is_empty());
    }

    #[test]
    fn a_valid_save_keeps_secrets_logs_changes_and_asks_for_a_restart() {
        let dir = TempDir::new("service-save");
        let s = service(&dir);
        let shown = s.view().unwrap().toml;
        // Unchanged: accepted, nothing written.
        let same = s.save(&shown, "page").unwrap();
        assert!(same.ok && !same.restarting);
        assert!(!s.restart_requested());
        let edited = shown.replace("150MiB", "512MiB");
        let out = s.save(&edited, "import").unwrap();
        assert!(out.ok && out.restarting, "{out:?}");
        assert_eq!(out.changes.len(), 1);
        assert!(s.restart_requested());
        let now = s.file.read().unwrap();
        assert!(now.contains("u:secret@") && now.contains("512MiB"));
        let log = s.view().unwrap().changes;
        assert_eq!(log[0].via, "import");
        assert_eq!(log[0].changes[0].key, "memory_limit");
    }

    #[test]
    fn section_forms_are_listed_checked_saved_and_refused_located() {
        let dir = TempDir::new("service-sections");
        let s = service(&dir);
        let form = |v: serde_json::Value| match v {
            Json::Object(m) => m,
            other => panic!("{other}"),
        };
        let view = serde_json::to_value(s.view().unwrap()).unwrap();
        assert_eq!(view["sections"]["web"]["keys"][1]["kind"], "bool");
        // A value the parser refuses: located by key and line; nothing saved.
        let bad = s
            .save_section(
                "events",
                &form(serde_json::json!({"snapshot_quality": 500})),
            )
            .unwrap();
        assert!(!bad.ok, "{bad:?}");
        assert_eq!(bad.errors[0].key, "events.snapshot_quality");
        assert_eq!(bad.errors[0].line, Some(4), "{bad:?}");
        assert_eq!(s.file.read().unwrap(), START);
        // A key the forms do not edit, and a wrong type: named.
        let other = s
            .check_section("web", &form(serde_json::json!({"listen": "0.0.0.0:80"})))
            .unwrap();
        assert_eq!(other.errors[0].key, "web.listen", "{other:?}");
        let typed = s
            .check_section("events", &form(serde_json::json!({"queue": "many"})))
            .unwrap();
        assert!(!typed.ok && typed.errors[0].key == "events.queue");
        // A valid one: checked, then saved, logged and applied.
        let token = form(serde_json::json!({"metrics_token": "0123456789abcdef0123"}));
        assert!(s.check_section("web", &token).unwrap().ok);
        assert!(!s.restart_requested());
        let out = s.save_section("web", &token).unwrap();
        assert!(out.ok && out.restarting, "{out:?}");
        let now = s.file.read().unwrap();
        assert!(now.contains("u:secret@") && now.contains("0123456789abcdef0123"));
        let view = serde_json::to_value(s.view().unwrap()).unwrap();
        assert_eq!(view["sections"]["web"]["keys"][2]["value"], HIDDEN);
        assert!(!view.to_string().contains("0123456789abcdef0123"));
        assert_eq!(view["changes"][0]["via"], "section:web");
    }

    #[test]
    fn camera_forms_and_a_factory_reset() {
        let dir = TempDir::new("service-cameras");
        let s = service(&dir);
        let mut cams: Vec<cameras::CameraForm> = serde_json::from_str(
            r#"[{"was":"a","name":"a","url":"rtsp://10.0.0.5/s","password":"***"},
                {"name":"b","url":"rtsp://10.0.0.6/s","detect_fps":"x"}]"#,
        )
        .map_err(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            cams.is_empty(),
            "a string detect_fps is refused by the form's types"
        );
        cams = serde_json::from_str(
            r#"[{"was":"a","name":"a","url":"rtsp://10.0.0.5/s","password":"***"},
                {"name":"b","url":"rtsp://10.0.0.6/s","detect_fps":100}]"#,
        )
        .unwrap();
        let bad = s.save_cameras(&cams).unwrap();
        assert_eq!(bad.errors[0].key, "camera[1].detect_fps", "{bad:?}");
        cams[1].detect_fps = Some(2.0);
        cams.reverse();
        let out = s.check_cameras(&cams).unwrap();
        assert!(!out.ok, "two cameras are over 150 MiB: {out:?}");
        cams.pop();
        let out = s.save_cameras(&cams).unwrap();
        assert!(out.ok && out.restarting, "{out:?}");
        assert!(
            !s.file.read().unwrap().contains("secret"),
            "camera a was removed"
        );
        let reset = s.factory_reset().unwrap();
        assert!(reset.ok && reset.restarting);
        assert_eq!(s.file.read().unwrap(), START);
        let log = s.view().unwrap().changes;
        assert_eq!(
            log.iter().map(|e| e.via.as_str()).collect::<Vec<_>>(),
            ["factory-reset", "cameras"]
        );
    }
}
