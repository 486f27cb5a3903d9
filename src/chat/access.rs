//! Who may do what from chat: the pure decision, given who the user is and
//! who the incident's people are. The handler gathers the people (the
//! service's responders from its escalation policy and schedules, the
//! incident's paged users, role holders and opener) and asks [`decide`].
//!
//! Defaults (each service may change them under `[services.permissions]`):
//! responders may acknowledge, resolve, escalate, snooze, set the severity,
//! add notes and walk the runbook; only admins give incident roles; anyone
//! configured may open an incident, page, and read a public incident's
//! status, while a private incident's status is for its responders.

use super::command::IncidentAction;
use crate::config::{Allowed, ServicePermissions};
use std::collections::BTreeSet;

/// What an incident action needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Working the incident: `[services.permissions] respond`.
    Respond,
    /// Giving roles: `[services.permissions] roles`.
    Roles,
    /// Reading it: anyone for a public incident, responders for a private one.
    Read,
}

impl Need {
    /// What `action` needs.
    pub fn of(action: &IncidentAction) -> Self {
        match action {
            IncidentAction::Status | IncidentAction::Summary => Self::Read,
            IncidentAction::Runbook(args)
                if matches!(
                    args.first().map(String::as_str),
                    None | Some("list" | "show")
                ) =>
            {
                Self::Read
            }
            IncidentAction::Role { .. } => Self::Roles,
            _ => Self::Respond,
        }
    }
}

/// The words for what `action` does to an incident, for a refusal:
/// "You may not {verb} INC-3".
pub fn verb(action: &IncidentAction) -> &'static str {
    match action {
        IncidentAction::Ack => "acknowledge",
        IncidentAction::Resolve { .. } => "resolve",
        IncidentAction::Escalate => "escalate",
        IncidentAction::Snooze { .. } => "snooze",
        IncidentAction::Severity(_) => "change the severity of",
        IncidentAction::Note(_) => "add notes to",
        IncidentAction::Update(_) => "post status updates on",
        IncidentAction::Public(_) => "change the status page of",
        IncidentAction::Role { .. } => "give roles on",
        IncidentAction::Status | IncidentAction::Summary => "see",
        IncidentAction::Runbook(_) | IncidentAction::Step(_) | IncidentAction::Phase(_) => {
            "walk the runbook of"
        }
        IncidentAction::New { .. } | IncidentAction::Drill(_) => "open",
    }
}

/// Who the decision is about.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The tocsin user asking.
    pub user: &'a str,
    /// `[chat] admins`.
    pub admins: &'a [String],
    /// The incident's responders: the service's, and its paged users, role
    /// holders and opener.
    pub responders: &'a BTreeSet<String>,
    /// The service's permissions.
    pub permissions: ServicePermissions,
    /// Whether the incident is private.
    pub private: bool,
}

/// Whether the user may do what `need` needs; `Err(who)` says who may.
pub fn decide(s: &Subject<'_>, need: Need) -> Result<(), Allowed> {
    let allowed = match need {
        Need::Respond => s.permissions.respond,
        Need::Roles => s.permissions.roles,
        Need::Read if s.private => Allowed::Responders,
        Need::Read => Allowed::Anyone,
    };
    let admin = s.admins.iter().any(|a| a == s.user);
    let ok = match allowed {
        Allowed::Anyone => true,
        Allowed::Responders => admin || s.responders.contains(s.user),
        Allowed::Admins => admin,
    };
    if ok { Ok(()) } else { Err(allowed) }
}

/// The refusal: why, and who can.
pub fn refusal(s: &Subject<'_>, who: Allowed, verb: &str, incident: &str, service: &str) -> String {
    let list = |names: &mut dyn Iterator<Item = &String>| {
        let v: Vec<&str> = names.map(String::as_str).collect();
        if v.is_empty() {
            "nobody".to_string()
        } else {
            v.join(", ")
        }
    };
    let admins = list(&mut s.admins.iter());
    let private = if s.private { "private " } else { "" };
    match who {
        Allowed::Admins => format!(
            "You may not {verb} {incident}: on {service} only admins may ([chat] admins: {admins})."
        ),
        _ => format!(
            "You may not {verb} {private}{incident}: only its responders and admins may. Responders: {} (the {service} escalation policy and its schedules, [[services]] responders, and whoever was paged for it, holds a role in it or opened it). Admins: {admins}.",
            list(&mut s.responders.iter())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::command::{Role, UserRef};

    fn subject<'a>(
        user: &'a str,
        admins: &'a [String],
        responders: &'a BTreeSet<String>,
    ) -> Subject<'a> {
        Subject {
            user,
            admins,
            responders,
            permissions: ServicePermissions::default(),
            private: false,
        }
    }

    #[test]
    fn responders_work_incidents_admins_give_roles_anyone_reads_public_ones() {
        let admins = vec!["alice".to_string()];
        let responders: BTreeSet<String> = ["bob".to_string()].into();
        let role = IncidentAction::Role {
            role: Role::Commander,
            user: UserRef::Name("bob".into()),
        };
        let bob = subject("bob", &admins, &responders);
        let carol = subject("carol", &admins, &responders);
        let alice = subject("alice", &admins, &responders);
        assert_eq!(decide(&bob, Need::of(&IncidentAction::Ack)), Ok(()));
        assert_eq!(
            decide(&carol, Need::of(&IncidentAction::Ack)),
            Err(Allowed::Responders)
        );
        assert_eq!(decide(&alice, Need::of(&IncidentAction::Ack)), Ok(()));
        assert_eq!(decide(&bob, Need::of(&role)), Err(Allowed::Admins));
        assert_eq!(decide(&alice, Need::of(&role)), Ok(()));
        assert_eq!(decide(&carol, Need::of(&IncidentAction::Status)), Ok(()));
        let show = IncidentAction::Runbook(vec!["show".into()]);
        assert_eq!(decide(&carol, Need::of(&show)), Ok(()));
        let attach = IncidentAction::Runbook(vec!["api-credential-leak".into()]);
        assert_eq!(decide(&carol, Need::of(&attach)), Err(Allowed::Responders));
        // A private incident is read by its responders only.
        let private = Subject {
            private: true,
            ..carol.clone()
        };
        assert_eq!(
            decide(&private, Need::of(&IncidentAction::Status)),
            Err(Allowed::Responders)
        );
        // A service may open its incidents to anyone, or give roles to responders.
        let open = Subject {
            permissions: ServicePermissions {
                respond: Allowed::Anyone,
                roles: Allowed::Responders,
            },
            ..carol.clone()
        };
        assert_eq!(decide(&open, Need::of(&IncidentAction::Ack)), Ok(()));
        assert_eq!(decide(&open, Need::of(&role)), Err(Allowed::Responders));
        let bob_roles = Subject {
            user: "bob",
            ..open
        };
        assert_eq!(decide(&bob_roles, Need::of(&role)), Ok(()));
    }

    #[test]
    fn refusals_say_why_and_who_can() {
        let admins = vec!["alice".to_string()];
        let responders: BTreeSet<String> = ["bob".to_string(), "dave".to_string()].into();
        let carol = subject("carol", &admins, &responders);
        let text = refusal(
            &carol,
            Allowed::Responders,
            "acknowledge",
            "INC-3",
            "payments",
        );
        assert!(text.starts_with("You may not acknowledge INC-3"), "{text}");
        assert!(
            text.contains("Responders: bob, dave") && text.contains("Admins: alice"),
            "{text}"
        );
        let text = refusal(
            &carol,
            Allowed::Admins,
            "give roles on",
            "INC-3",
            "payments",
        );
        assert_eq!(
            text,
            "You may not give roles on INC-3: on payments only admins may ([chat] admins: alice)."
        );
    }
}
