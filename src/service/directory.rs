//! The directory of users, schedules and escalation policies, built once
//! from the validated config, plus the runtime schedule overrides.
//!
//! Runtime overrides are kept in memory as well as in the store: escalation
//! steps look up who is on call inside a store transaction, where sled
//! allows no scans, and the list is small.

use crate::config::{Config, ServicePermissions, TargetConfig, UserConfig};
use crate::escalation::Policy;
use crate::incident::Incident;
use crate::oncall::{OnCall, Override, Schedule};
use crate::runbook::Runbooks;
use crate::store::{Store, StoreError, StoredOverride};
use crate::templates::Templates;
use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Users, schedules and policies by name.
#[derive(Debug)]
pub struct Directory {
    /// The whole config.
    pub config: Arc<Config>,
    schedules: BTreeMap<String, Schedule>,
    policies: BTreeMap<String, Policy>,
    overrides: RwLock<HashMap<String, Vec<StoredOverride>>>,
    /// The loaded runbooks.
    pub runbooks: Runbooks,
    /// The message templates.
    pub templates: Templates,
    /// The integrations' routing rules, parsed.
    pub routes: super::routing::Routes,
    /// Working hours and people's time zones, for the pages report.
    pub working_time: crate::config::WorkingTime,
}

impl Directory {
    /// Builds the directory from a validated config, with its runbooks and templates.
    ///
    /// # Panics
    /// If a schedule does not build: [`Config::load`] validated them.
    pub fn new(config: Arc<Config>, runbooks: Runbooks, templates: Templates) -> Self {
        let is_user = |n: &str| config.users.iter().any(|u| u.name == n);
        let schedules = config
            .schedules
            .iter()
            .map(|s| {
                let built = Schedule::build(s, &is_user)
                    .unwrap_or_else(|e| panic!("schedule {} was validated: {e:?}", s.name));
                (s.name.clone(), built)
            })
            .collect();
        let policies = config
            .escalation_policies
            .iter()
            .map(|p| (p.name.clone(), Policy::from_config(p)))
            .collect();
        let routes = super::routing::Routes::new(&config.integrations);
        // Validated by `Config::load`; a config built without it gets the
        // defaults rather than a panic.
        let working_time = config.working_time().unwrap_or_else(|issues| {
            for i in issues {
                tracing::warn!(%i, "Reports: using the default working hours");
            }
            crate::config::WorkingTime::default()
        });
        Self {
            routes,
            working_time,
            config,
            schedules,
            policies,
            overrides: RwLock::new(HashMap::new()),
            runbooks,
            templates,
        }
    }

    /// Loads the runbooks and templates the config names and builds the
    /// directory; every runbook and template problem is returned at once.
    pub fn load(config: Arc<Config>) -> Result<Self, Vec<String>> {
        let runbooks = crate::runbook::load_dir(&config.runbooks.dir)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        let templates = Templates::load(config.templates.dir.as_deref())
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        match (runbooks, templates) {
            (Ok(r), Ok(t)) => Ok(Self::new(config, r, t)),
            (r, t) => Err(r.err().into_iter().chain(t.err()).flatten().collect()),
        }
    }

    /// Loads the runtime overrides of every schedule from the store.
    pub fn load_overrides(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut all = HashMap::new();
        for name in self.schedules.keys() {
            all.insert(name.clone(), store.overrides(name)?);
        }
        *self.overrides.write() = all;
        Ok(())
    }

    /// The runtime overrides of a schedule, as stored.
    pub fn stored_overrides(&self, schedule: &str) -> Vec<StoredOverride> {
        self.overrides
            .read()
            .get(schedule)
            .cloned()
            .unwrap_or_default()
    }

    /// The runtime overrides of a schedule, as the on-call module takes them.
    pub fn runtime_overrides(&self, schedule: &str) -> Vec<Override> {
        self.stored_overrides(schedule)
            .into_iter()
            .map(|o| Override {
                user: o.user,
                start: o.start,
                end: o.end,
            })
            .collect()
    }

    pub(super) fn remember_override(&self, o: StoredOverride) {
        self.overrides
            .write()
            .entry(o.schedule.clone())
            .or_default()
            .push(o);
    }

    pub(super) fn forget_override(&self, schedule: &str, id: u64) {
        if let Some(list) = self.overrides.write().get_mut(schedule) {
            list.retain(|o| o.id != id);
        }
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.config.users.iter().find(|u| u.name == name)
    }

    /// The user behind a chat platform's user id.
    pub fn user_by_chat_id(&self, platform: &str, id: &str) -> Option<&UserConfig> {
        self.config
            .users
            .iter()
            .find(|u| u.chat_id(platform) == Some(id))
    }

    /// How to name a tocsin user on a chat platform: a mention where the
    /// user has an id there, else the name.
    pub fn mention(&self, platform: &str, user: &str) -> String {
        // Both come from the config: escaped, so an odd id or name cannot
        // close the mention early or form one of its own.
        let markup = crate::templates::Markup::of_platform(platform);
        match self.user(user).and_then(|u| u.chat_id(platform)) {
            Some(id) => format!("<@{}>", markup.escape(id)),
            None => markup.escape(user),
        }
    }

    /// A schedule by name.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.get(name)
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.values()
    }

    /// The escalation policy an incident pages: the one its routing rule
    /// chose, else its service's.
    pub fn policy_for_incident(&self, inc: &crate::incident::Incident) -> Option<&Policy> {
        match &inc.escalation_policy {
            Some(p) => self.policies.get(p),
            None => self.policy_for_service(&inc.service),
        }
    }

    /// The escalation policy of a service, if it has one.
    pub fn policy_for_service(&self, service: &str) -> Option<&Policy> {
        let svc = self.config.services.iter().find(|s| s.name == service)?;
        self.policies.get(svc.escalation_policy.as_deref()?)
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// The configured responders of `service`: every user its escalation
    /// policy names, directly or through a schedule (each layer's users,
    /// configured overrides and runtime overrides, so whoever covers a
    /// shift counts), plus its `responders`. Admins are not included.
    pub fn responders(&self, service: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(svc) = self.config.services.iter().find(|s| s.name == service) else {
            return out;
        };
        out.extend(svc.responders.iter().cloned());
        let Some(policy) = self.policy_for_service(service) else {
            return out;
        };
        for target in policy.steps.iter().flat_map(|s| &s.targets) {
            match target {
                TargetConfig::User(u) => {
                    out.insert(u.clone());
                }
                TargetConfig::Schedule(name) => {
                    if let Some(cfg) = self.config.schedules.iter().find(|s| &s.name == name) {
                        out.extend(cfg.layers.iter().flat_map(|l| l.users.iter().cloned()));
                        out.extend(cfg.overrides.iter().map(|o| o.user.clone()));
                    }
                    out.extend(self.stored_overrides(name).into_iter().map(|o| o.user));
                }
                TargetConfig::Webhook(_) => {}
            }
        }
        out
    }

    /// Whether `user` is in `[chat] admins`.
    pub fn is_admin(&self, user: &str) -> bool {
        self.config.chat.admins.iter().any(|a| a == user)
    }

    /// Who may do what to `service`'s incidents from chat.
    pub fn permissions(&self, service: &str) -> ServicePermissions {
        self.config
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.permissions)
            .unwrap_or_default()
    }

    /// Whether `inc`'s channels are private: its service says so
    /// (`private = true`), its severity is one of `[chat]
    /// private_severities`, or a runbook that fits it (or is attached) is
    /// private.
    pub fn is_private(&self, inc: &Incident) -> bool {
        let config = &self.config;
        config
            .services
            .iter()
            .any(|s| s.name == inc.service && s.private)
            || config.chat.private_severities.contains(&inc.severity)
            || inc
                .runbook
                .as_ref()
                .and_then(|p| self.runbooks.get(&p.runbook))
                .is_some_and(|r| r.private)
            || self.runbooks.matching(inc).any(|r| r.private)
    }

    /// Who is on call for `schedule` at `at`, runtime overrides included.
    pub fn on_call(&self, schedule: &str, at: DateTime<Utc>) -> Option<OnCall> {
        let s = self.schedules.get(schedule)?;
        s.who_is_on_call(at, &self.runtime_overrides(schedule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(toml: &str) -> Directory {
        let config = Config::from_toml_str(toml, &Default::default()).unwrap();
        Directory::new(
            Arc::new(config),
            Runbooks::default(),
            Templates::load(None).unwrap(),
        )
    }

    const PEOPLE: &str = r#"
[[users]]
name = "alice"
[[users]]
name = "bob"
[[users]]
name = "carol"
[[users]]
name = "dave"
[[schedules]]
name = "primary"
time_zone = "UTC"
[[schedules.layers]]
name = "l"
users = ["alice"]
start = "2026-01-05T00:00:00"
handoff = "0 0 9 * * Mon"
[[schedules.overrides]]
user = "carol"
start = "2026-01-06T00:00:00Z"
end = "2026-01-07T00:00:00Z"
[[escalation_policies]]
name = "p"
[[escalation_policies.steps]]
targets = [{ schedule = "primary" }, { user = "bob" }]
delay = "5m"
"#;

    #[test]
    fn responders_come_from_the_policy_its_schedules_and_the_service() {
        let dir = directory(&format!(
            "{PEOPLE}\n[[services]]\nname = \"pay\"\nescalation_policy = \"p\"\nresponders = [\"dave\"]\n[[services]]\nname = \"web\"\n"
        ));
        let names = |s: &str| dir.responders(s).into_iter().collect::<Vec<_>>();
        assert_eq!(names("pay"), ["alice", "bob", "carol", "dave"]);
        assert!(names("web").is_empty());
        assert!(names("nope").is_empty());
    }

    #[test]
    fn private_channels_follow_the_service_the_severity_and_private_runbooks() {
        use crate::incident::{AlertAction, AlertEvent};
        use crate::incident::{IncidentId, Severity};
        let config = Config::from_toml_str(
            "[chat]\nprivate_severities = [\"SEV1\"]\n[[services]]\nname = \"web\"\n[[services]]\nname = \"vault\"\nprivate = true\n",
            &Default::default(),
        )
        .unwrap();
        let runbook = crate::runbook::parse(
            std::path::Path::new("runbooks/leak.toml"),
            "name = \"leak\"\ntitle = \"Leak\"\n[match]\nlabels = ['category=\"security\"']\n[[phases]]\nphase = \"detection\"\n[[phases.steps]]\nid = \"a\"\ntext = \"Look.\"\n",
        )
        .unwrap();
        assert!(runbook.private, "a match naming a security tag");
        let dir = Directory::new(
            Arc::new(config),
            Runbooks::new(vec![runbook]),
            Templates::load(None).unwrap(),
        );
        let incident = |service: &str, severity: Severity, category: &str| {
            let event = AlertEvent {
                dedup_key: "k".into(),
                fingerprint: None,
                action: AlertAction::Trigger,
                summary: "Something".into(),
                incident_title: None,
                source: "test".into(),
                severity: Some(severity),
                labels: [("category".to_string(), category.to_string())].into(),
                details: serde_json::Value::Null,
                links: Vec::new(),
                left_out: None,
                expires_at: None,
            };
            crate::incident::Incident::open(
                IncidentId(1),
                service,
                "x",
                &event,
                chrono::DateTime::UNIX_EPOCH,
            )
            .incident
        };
        assert!(!dir.is_private(&incident("web", Severity::Sev2, "capacity")));
        assert!(dir.is_private(&incident("web", Severity::Sev1, "capacity")));
        assert!(dir.is_private(&incident("vault", Severity::Sev3, "capacity")));
        assert!(dir.is_private(&incident("web", Severity::Sev3, "security")));
    }

    #[test]
    fn unknown_responders_and_severities_are_config_errors() {
        let err = Config::from_toml_str(
            "[[services]]\nname = \"pay\"\nresponders = [\"zed\"]\n[chat]\nprivate_severities = [\"SEV9\"]\n",
            &Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("services[0].responders[0]: unknown user 'zed'"),
            "{err}"
        );
        assert!(err.contains("unknown severity 'SEV9'"), "{err}");
        let ok = Config::from_toml_str(
            "[chat]\nprivate_severities = [\"SEV1\", \"sev2\"]\n[[services]]\nname = \"pay\"\nprivate = true\npermissions = { respond = \"anyone\" }\n",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            ok.chat.private_severities,
            [
                crate::incident::Severity::Sev1,
                crate::incident::Severity::Sev2
            ]
        );
        assert_eq!(
            ok.services[0].permissions.respond,
            crate::config::Allowed::Anyone
        );
        assert_eq!(
            ok.services[0].permissions.roles,
            crate::config::Allowed::Admins
        );
    }

    #[test]
    fn mentions_and_name_fallbacks_are_escaped_for_the_platform() {
        let config = Config::from_toml_str(
            r#"
[[users]]
name = "<!channel> & co"
slack_id = "U024BE7LH"
contact_methods = [{ kind = "log" }]
"#,
            &Default::default(),
        )
        .unwrap();
        let dir = Directory::new(
            Arc::new(config),
            Runbooks::default(),
            Templates::load(None).unwrap(),
        );
        assert_eq!(dir.mention("slack", "<!channel> & co"), "<@U024BE7LH>");
        assert_eq!(
            dir.mention("discord", "<!channel> & co"),
            "\\<!channel\\> & co"
        );
        assert_eq!(dir.mention("slack", "<@U1>"), "&lt;@U1&gt;");
    }
}
