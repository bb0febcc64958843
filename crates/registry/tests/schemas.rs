//! The embedded XDM sources: composition, seed 002's entities against the composed schema, and
//! the Avro mapping round trip (no broker needed).

#[allow(deprecated)]
use apache_avro::{from_avro_datum, to_avro_datum};
use cdp_control::XdmSchema;
use cdp_registry::{avro_schema_for, avro_to_json, compose, json_to_avro, Composition};
use serde_json::{json, Value};

fn seed_entity(name: &str, email: &str) -> Value {
    json!({
      "_id": "9af5adcc-db9c-4692-b826-65d3abe68c22",
      "timestamp": "2019-02-23T22:07:01Z",
      "environment": {
        "browserDetails": {
          "userAgent": "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/29.0.1547.57 Safari/537.36 OPR/16.0.1196.62",
          "acceptLanguage": "en-US",
          "cookiesEnabled": true,
          "javaScriptVersion": "1.6",
          "javaEnabled": true
        },
        "colorDepth": 32,
        "viewportHeight": 799,
        "viewportWidth": 414
      },
      "productListItems": [ { "SKU": "CC", "name": name, "quantity": 30, "priceTotal": 7.8 } ],
      "commerce": { "productViews": { "value": 1 } },
      "_experience": { "campaign": { "message": { "profileSnapshot": { "workEmail": { "address": email } } } } }
    })
}

const GROUPS: &[&str] = &[
    "environment-details",
    "commerce-details",
    "web-details",
    "experience-campaign",
    "experience-analytics",
];

fn event_schema(tenant_fields: Option<&Value>) -> XdmSchema {
    let groups: Vec<String> = GROUPS.iter().map(|s| s.to_string()).collect();
    let composed = compose(&Composition {
        id: "https://ns.adobe.com/acme/schemas/0123abcd",
        title: "Web events",
        tenant: "acme",
        class: "_xdm.context.experienceevent",
        field_groups: &groups,
        tenant_fields,
        profile_enabled: true,
    })
    .expect("composes");
    XdmSchema {
        org_id: None,
        id: "https://ns.adobe.com/acme/schemas/0123abcd".into(),
        version: 1,
        title: "Web events".into(),
        tenant: "acme".into(),
        class: composed.class,
        field_groups: composed.field_groups,
        profile_enabled: true,
        definition: composed.definition,
        created_at: 0,
    }
}

fn validator(schema: &XdmSchema) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema.definition)
        .expect("compiles")
}

#[test]
fn seed_002_messages_validate_and_broken_ones_fail() {
    let schema = event_schema(None);
    assert!(schema.field_groups.contains(&"identity-map".to_string()));
    let v = validator(&schema);
    for e in [
        seed_entity("Fernie Snow", "gregdorcey@example.com"),
        seed_entity("Carmine Santiago", "emilyong@example.com"),
    ] {
        let errors: Vec<String> = v.iter_errors(&e).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let mut wrong_type = seed_entity("x", "y@example.com");
    wrong_type["timestamp"] = json!(1550959621);
    assert!(!v.is_valid(&wrong_type));
    let mut not_a_date = seed_entity("x", "y@example.com");
    not_a_date["timestamp"] = json!("yesterday");
    assert!(!v.is_valid(&not_a_date));
    for field in ["_id", "timestamp"] {
        let mut missing = seed_entity("x", "y@example.com");
        missing.as_object_mut().unwrap().remove(field);
        assert!(!v.is_valid(&missing), "missing {field} must fail");
    }
    // Known objects are closed: a typo is caught.
    let mut typo = seed_entity("x", "y@example.com");
    typo["commerce"]["productView"] = json!({ "value": 1 });
    assert!(!v.is_valid(&typo));
    // identityMap and endUserIDs are open.
    let mut open = seed_entity("x", "y@example.com");
    open["identityMap"] =
        json!({ "ECID": [{ "id": "123", "primary": true }], "Email": [{ "id": "a@b.c" }] });
    open["endUserIDs"] =
        json!({ "_vendor": { "adobe": { "experience": { "mcId": { "id": "x" } } } } });
    assert!(v.is_valid(&open));
    // Seed 003's path is there too.
    let mut analytics = seed_entity("x", "y@example.com");
    analytics["_experience"]["analytics"] =
        json!({ "endUser": { "firstWeb": { "webPageDetails": { "isHomePage": true } } } });
    assert!(v.is_valid(&analytics));
}

#[test]
fn composition_rules() {
    let fg = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let base = |class: &'static str, groups: Vec<String>| {
        let groups = Box::leak(groups.into_boxed_slice());
        compose(&Composition {
            id: "https://ns.adobe.com/acme/schemas/1",
            title: "t",
            tenant: "acme",
            class,
            field_groups: groups,
            tenant_fields: None,
            profile_enabled: false,
        })
    };
    assert!(base("_xdm.context.profile", fg(&["web-details"])).is_err());
    assert!(base("_xdm.context.nope", fg(&[])).is_err());
    assert!(base("_xdm.context.experienceevent", fg(&["no-such-group"])).is_err());
    let profile = base(
        "https://ns.adobe.com/xdm/context/profile",
        fg(&[
            "profile-person-details",
            "profile-personal-details",
            "loyalty-details",
            "consents",
        ]),
    )
    .expect("profile composes");
    assert_eq!(profile.class, "_xdm.context.profile");
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&profile.definition)
        .unwrap();
    let person = json!({
        "identityMap": { "Email": [{ "id": "a@b.c", "primary": true }] },
        "person": { "name": { "firstName": "Ada", "lastName": "L" }, "birthDate": "1815-12-10", "birthYear": 1815 },
        "personalEmail": { "address": "a@b.c" },
        "homeAddress": { "city": "London", "countryCode": "GB" },
        "loyalty": { "tier": "gold", "points": 10 },
        "segmentMembership": { "ups": { "seg-1": { "status": "realized", "lastQualificationTime": "2020-03-03T21:24:39Z" } } }
    });
    assert!(v.is_valid(&person));
    let mut bad = person.clone();
    bad["person"]["birthDate"] = json!("10/12/1815");
    assert!(!v.is_valid(&bad));
}

#[test]
fn tenant_fields_live_under_the_tenant_namespace_and_it_is_open() {
    let fields = json!({ "loyaltyTier": { "type": "string" }, "visits": { "type": "integer" } });
    let schema = event_schema(Some(&fields));
    let v = validator(&schema);
    let mut e = seed_entity("x", "y@example.com");
    e["_acme"] = json!({ "loyaltyTier": "gold", "visits": 3, "undeclared": { "a": 1 } });
    assert!(v.is_valid(&e));
    e["_acme"]["visits"] = json!("three");
    assert!(!v.is_valid(&e));
}

#[test]
// The single-datum helpers are deprecated in favour of builder-style readers/writers; they are
// still the shortest way to show a plain encode/decode.
#[allow(deprecated)]
fn avro_round_trip_of_the_seed_entity() {
    let fields = json!({ "loyaltyTier": { "type": "string" } });
    let schema = event_schema(Some(&fields));
    let avro = avro_schema_for(&schema).expect("maps to Avro");
    let mut entity = seed_entity("Fernie Snow", "gregdorcey@example.com");
    entity["identityMap"] =
        json!({ "ECID": [{ "id": "123", "primary": true, "authenticatedState": "ambiguous" }] });
    entity["endUserIDs"] = json!({ "_vendor": { "adobe": { "x": [1, "two", null] } } });
    entity["_acme"] = json!({ "loyaltyTier": "gold", "extra": { "deep": [1, 2] } });
    let value = json_to_avro(&avro, &entity).expect("converts");
    let bytes = to_avro_datum(&avro, value).expect("encodes");
    let decoded = from_avro_datum(&avro, &mut bytes.as_slice(), None).expect("decodes");
    assert_eq!(avro_to_json(&decoded), entity);

    let mut wrong = entity.clone();
    wrong["environment"]["colorDepth"] = json!("deep");
    assert!(json_to_avro(&avro, &wrong).is_err());
    let mut missing = entity;
    missing.as_object_mut().unwrap().remove("_id");
    assert!(json_to_avro(&avro, &missing).is_err());
}
