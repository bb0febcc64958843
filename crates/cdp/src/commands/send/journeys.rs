//! The synthetic shop `cdp send` sends: people browsing, viewing products, filling carts and
//! buying, deterministic for a seed (picks by the benchmarks' splitmix).

use cdp_client::Event;
use serde_json::{json, Value};

use cdp::synthetic::mix;

/// The synthetic shop: people browsing, viewing products, filling carts and buying.
pub struct Journeys {
    pub seed: u64,
    pub profiles: u64,
}

/// SKU, name, unit price (EUR).
const PRODUCTS: [(&str, &str, f64); 12] = [
    ("SKU-10001", "Trail running shoe", 89.90),
    ("SKU-10002", "Merino base layer", 64.50),
    ("SKU-10003", "Rain shell jacket", 159.00),
    ("SKU-10004", "Hiking socks (3 pairs)", 19.90),
    ("SKU-10005", "Daypack 22 l", 74.00),
    ("SKU-10006", "Insulated bottle", 29.00),
    ("SKU-10007", "Headlamp", 39.95),
    ("SKU-10008", "Trekking poles", 99.00),
    ("SKU-10009", "Fleece mid layer", 79.00),
    ("SKU-10010", "Sun hat", 24.50),
    ("SKU-10011", "Down vest", 129.00),
    ("SKU-10012", "Camp mug", 12.00),
];

const PAGES: [&str; 6] = ["home", "new-arrivals", "men", "women", "sale", "search"];

const FIRST: [&str; 8] = [
    "alice", "bruno", "chloe", "dmitri", "eva", "farid", "grace", "hugo",
];
const LAST: [&str; 6] = ["martin", "nguyen", "schmidt", "rossi", "garcia", "kowalski"];

const BROWSERS: [(&str, &str); 4] = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "Windows",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "macOS",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        "iOS",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Linux",
    ),
];

const SITE: &str = "https://shop.example.com";

fn pick<T: Copy>(list: &[T], h: u64) -> T {
    list[(h % list.len() as u64) as usize]
}

fn money(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Journeys {
    /// The person of event `i`: spread over all people, not in turn.
    fn person(&self, i: u64) -> u64 {
        mix(self.seed ^ mix(i)) % self.profiles
    }

    /// 38 digits, unique per person (the profile benchmark's ECID form).
    fn ecid(&self, person: u64) -> String {
        format!(
            "{:019}{:019}",
            mix(self.seed ^ person) % 10_000_000_000_000_000_000,
            person
        )
    }

    /// About half the people have an account they log in with to shop.
    fn email(&self, person: u64) -> Option<String> {
        let h = mix(self.seed ^ person ^ 0x00e4_a11e);
        (h % 100 < 50).then(|| {
            format!(
                "{}.{}{}@example.com",
                pick(&FIRST, h >> 8),
                pick(&LAST, h >> 16),
                person
            )
        })
    }

    pub fn event(&self, i: u64) -> Event {
        let person = self.person(i);
        let h = mix(self.seed.wrapping_mul(31) ^ i);
        let (user_agent, os) = pick(&BROWSERS, mix(self.seed ^ person ^ 0xb0));
        let environment = json!({
            "type": "browser",
            "browserDetails": {"userAgent": user_agent, "acceptLanguage": "en-US", "cookiesEnabled": true},
            "operatingSystem": os
        });
        let (sku, name, price) = pick(&PRODUCTS, h >> 8);
        let slug = name.to_lowercase().replace([' ', '(', ')'], "-");
        let product_page = json!({"name": name, "URL": format!("{SITE}/p/{sku}/{slug}")});
        // Page views most, then product views, add-to-cart, and a few purchases.
        let (entity, shopping) = match h % 100 {
            0..=49 => {
                let page = pick(&PAGES, h >> 16);
                (
                    json!({
                        "eventType": "web.webpagedetails.pageViews",
                        "web": {
                            "webPageDetails": {"name": page, "URL": format!("{SITE}/{page}"),
                                               "isHomePage": page == "home", "pageViews": {"value": 1}},
                            "webReferrer": {"URL": "https://www.search.example/", "type": "search_engine"}
                        },
                        "environment": environment
                    }),
                    false,
                )
            }
            50..=79 => (
                json!({
                    "eventType": "commerce.productViews",
                    "web": {"webPageDetails": product_page},
                    "commerce": {"productViews": {"value": 1}},
                    "productListItems": [{"SKU": sku, "name": name, "quantity": 1,
                                          "priceTotal": price, "currencyCode": "EUR"}],
                    "environment": environment
                }),
                false,
            ),
            80..=93 => {
                let quantity = 1 + (h >> 24) % 3;
                (
                    json!({
                        "eventType": "commerce.productListAdds",
                        "web": {"webPageDetails": product_page},
                        "commerce": {"productListAdds": {"value": 1}},
                        "productListItems": [{"SKU": sku, "name": name, "quantity": quantity,
                                              "priceTotal": money(price * quantity as f64),
                                              "currencyCode": "EUR", "productAddMethod": "product page"}],
                        "environment": environment
                    }),
                    true,
                )
            }
            _ => {
                let lines = 1 + (h >> 24) % 3;
                let items: Vec<Value> = (0..lines)
                    .map(|k| {
                        let (sku, name, price) = pick(&PRODUCTS, (h >> 8) + k * 5);
                        let quantity = 1 + (h >> (32 + k)) % 2;
                        json!({"SKU": sku, "name": name, "quantity": quantity,
                               "priceTotal": money(price * quantity as f64), "currencyCode": "EUR"})
                    })
                    .collect();
                let total = money(items.iter().filter_map(|i| i["priceTotal"].as_f64()).sum());
                (
                    json!({
                        "eventType": "commerce.purchases",
                        "web": {"webPageDetails": {"name": "order-confirmation", "URL": format!("{SITE}/checkout/done")}},
                        "commerce": {
                            "purchases": {"value": 1},
                            "order": {"purchaseID": format!("ORD-{:012}", mix(h) % 1_000_000_000_000),
                                      "priceTotal": total, "currencyCode": "EUR"}
                        },
                        "productListItems": items,
                        "environment": environment
                    }),
                    true,
                )
            }
        };
        let event = Event::new(entity).with_identity("ECID", self.ecid(person), true);
        // A shopper with an account is logged in by the time they fill the cart.
        match self.email(person) {
            Some(email) if shopping => event.with_identity("Email", email, false),
            _ => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn journeys_are_deterministic_spread_and_mixed() {
        let j = Journeys {
            seed: 7,
            profiles: 50,
        };
        let events: Vec<Value> = (0..2000).map(|i| j.event(i).into_value()).collect();
        assert_eq!(
            events[17],
            j.event(17).into_value(),
            "same seed, same event"
        );
        let mut kinds: HashMap<String, usize> = HashMap::new();
        let mut people = HashSet::new();
        let mut with_email = 0;
        for e in &events {
            *kinds
                .entry(e["eventType"].as_str().unwrap().to_string())
                .or_default() += 1;
            let ecid = e["identityMap"]["ECID"][0]["id"].as_str().unwrap();
            assert_eq!(ecid.len(), 38);
            assert_eq!(e["identityMap"]["ECID"][0]["primary"], true);
            people.insert(ecid.to_string());
            if let Some(email) = e["identityMap"].get("Email") {
                assert!(email[0]["id"].as_str().unwrap().ends_with("@example.com"));
                with_email += 1;
                assert!(
                    ["commerce.productListAdds", "commerce.purchases"]
                        .contains(&e["eventType"].as_str().unwrap()),
                    "{e}"
                );
            }
            // Left for the client to fill in.
            assert!(e.get("_id").is_none() && e.get("timestamp").is_none());
        }
        assert_eq!(people.len(), 50, "every person has events");
        assert!(with_email > 0);
        let share = |k: &str| kinds.get(k).copied().unwrap_or(0) as f64 / 2000.0;
        assert!(
            (0.4..0.6).contains(&share("web.webpagedetails.pageViews")),
            "{kinds:?}"
        );
        assert!(
            (0.2..0.4).contains(&share("commerce.productViews")),
            "{kinds:?}"
        );
        assert!(
            (0.08..0.2).contains(&share("commerce.productListAdds")),
            "{kinds:?}"
        );
        assert!(
            (0.02..0.1).contains(&share("commerce.purchases")),
            "{kinds:?}"
        );
        for e in events
            .iter()
            .filter(|e| e["eventType"] == "commerce.purchases")
        {
            let items = e["productListItems"].as_array().unwrap();
            let sum: f64 = items
                .iter()
                .map(|i| i["priceTotal"].as_f64().unwrap())
                .sum();
            let total = e["commerce"]["order"]["priceTotal"].as_f64().unwrap();
            assert!((sum - total).abs() < 0.01, "{e}");
        }
    }
}
