//! The embedded XDM sources (`schemas/` at the repository root), so the binary is
//! self-contained and every instance composes from exactly the same definitions.

use serde_json::Value;

/// The classes a tenant schema can be based on.
pub const EXPERIENCE_EVENT: &str = "_xdm.context.experienceevent";
pub const PROFILE: &str = "_xdm.context.profile";

const CLASSES: &[&str] = &[
    include_str!("../../../schemas/classes/experienceevent.json"),
    include_str!("../../../schemas/classes/profile.json"),
];

const FIELD_GROUPS: &[&str] = &[
    include_str!("../../../schemas/fieldgroups/identity-map.json"),
    include_str!("../../../schemas/fieldgroups/environment-details.json"),
    include_str!("../../../schemas/fieldgroups/web-details.json"),
    include_str!("../../../schemas/fieldgroups/commerce-details.json"),
    include_str!("../../../schemas/fieldgroups/experience-analytics.json"),
    include_str!("../../../schemas/fieldgroups/experience-campaign.json"),
    include_str!("../../../schemas/fieldgroups/profile-person-details.json"),
    include_str!("../../../schemas/fieldgroups/profile-personal-details.json"),
    include_str!("../../../schemas/fieldgroups/loyalty-details.json"),
    include_str!("../../../schemas/fieldgroups/consents.json"),
];

/// A class or field group source.
#[derive(Debug, Clone)]
pub struct Source {
    /// `meta:name`, e.g. `_xdm.context.experienceevent` or `web-details`.
    pub name: String,
    /// `$id`, e.g. `https://ns.adobe.com/xdm/context/experienceevent`.
    pub uri: String,
    pub document: Value,
}

impl Source {
    fn parse(text: &str) -> Source {
        // The sources are part of the build and covered by tests; a broken one is a bug in the
        // repository, not a runtime condition.
        let document: Value = serde_json::from_str(text).expect("embedded XDM source is JSON");
        let field = |k: &str| document[k].as_str().unwrap_or_default().to_string();
        Source {
            name: field("meta:name"),
            uri: field("$id"),
            document,
        }
    }

    /// Field groups: the classes they may extend.
    pub fn intended_to_extend(&self) -> Vec<&str> {
        strings(&self.document["meta:intendedToExtend"])
    }

    /// Classes: the field groups they always carry.
    pub fn includes(&self) -> Vec<&str> {
        strings(&self.document["meta:includes"])
    }

    fn matches(&self, name: &str) -> bool {
        self.name == name || self.uri == name
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every class, parsed.
pub fn classes() -> Vec<Source> {
    CLASSES.iter().map(|t| Source::parse(t)).collect()
}

/// Every field group, parsed.
pub fn field_groups() -> Vec<Source> {
    FIELD_GROUPS.iter().map(|t| Source::parse(t)).collect()
}

/// A class by its `meta:name` or `$id`.
pub fn class(name: &str) -> Option<Source> {
    classes().into_iter().find(|c| c.matches(name))
}

/// A field group by its `meta:name` or `$id`.
pub fn field_group(name: &str) -> Option<Source> {
    field_groups().into_iter().find(|c| c.matches(name))
}
