//! `GET /segment/definitions`: the query (`evaluationInfo.continuous.enabled`, `limit`,
//! `start`) and the page, newest first (seed 003's `page` object).

use cdp_catalog::SegmentDefinition;
pub use cdp_http::paging::{Links, PageInfo};
use cdp_http::Paging;
use serde::Serialize;

use super::definition::DefinitionView;
use super::error::SegmentError;

pub const CONTINUOUS_PARAM: &str = "evaluationInfo.continuous.enabled";

/// What a list asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// `Some(true)`: streaming definitions only; `Some(false)`: batch ones only.
    pub continuous: Option<bool>,
    /// Definitions per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// The page to answer, from 0.
    pub start: usize,
}

impl ListQuery {
    /// Reads the query string's pairs; other parameters are ignored.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, SegmentError> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        let continuous = match get(CONTINUOUS_PARAM) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(SegmentError::bad_request(format!(
                    "the query parameter {CONTINUOUS_PARAM} must be true or false (got {other:?})"
                )))
            }
        };
        let paging =
            Paging::parse(get("limit"), get("start")).map_err(SegmentError::bad_request)?;
        let (limit, start) = (paging.limit, paging.start);
        Ok(Self {
            continuous,
            limit,
            start,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListPage {
    pub segments: Vec<DefinitionView>,
    pub page: PageInfo,
    pub link: Links,
}

/// The page `query` asks for of `definitions` (one sandbox's): filtered, newest first (ties by
/// id), `path` being where the list is served (for `link.next`).
pub fn page(mut definitions: Vec<&SegmentDefinition>, query: &ListQuery, path: &str) -> ListPage {
    definitions.retain(|d| query.continuous.is_none_or(|c| d.streaming == c));
    definitions.sort_by(|a, b| {
        b.creation_time
            .cmp(&a.creation_time)
            .then_with(|| a.id.cmp(&b.id))
    });
    let filter = query
        .continuous
        .map(|c| format!("{CONTINUOUS_PARAM}={c}&"))
        .unwrap_or_default();
    let paging = Paging {
        limit: query.limit,
        start: query.start,
    };
    let (shown, page, link) = paging.page(definitions, ("creationTime", "desc"), path, &filter);
    ListPage {
        segments: shown.into_iter().map(DefinitionView::of).collect(),
        page,
        link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, SegmentError> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ListQuery::parse(&owned)
    }

    fn def(id: &str, created: i64, streaming: bool) -> SegmentDefinition {
        SegmentDefinition {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: "acme".into(),
            sandbox: "prod".into(),
            schema_name: "_xdm.context.profile".into(),
            expression: "person.birthYear < 1970".into(),
            streaming,
            classification: if streaming { "profile only" } else { "x" }.into(),
            profile_only: streaming,
            creation_time: created,
            update_time: created,
        }
    }

    #[test]
    fn the_query_is_checked() {
        assert_eq!(
            q(&[]).unwrap(),
            ListQuery {
                continuous: None,
                limit: cdp_http::paging::DEFAULT_LIMIT,
                start: 0
            }
        );
        let all = q(&[
            (CONTINUOUS_PARAM, "true"),
            ("limit", "1000"),
            ("start", "3"),
        ])
        .unwrap();
        assert_eq!(
            (all.continuous, all.limit, all.start),
            (Some(true), 1000, 3)
        );
        assert_eq!(
            q(&[(CONTINUOUS_PARAM, "false")]).unwrap().continuous,
            Some(false)
        );
        for (param, value) in [
            (CONTINUOUS_PARAM, "yes"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "x"),
            ("start", "-1"),
        ] {
            let e = q(&[(param, value)]).unwrap_err();
            assert!(e.to_string().contains(param), "{param}={value}: {e}");
        }
    }

    #[test]
    fn pages_are_newest_first_and_filtered() {
        let defs: Vec<SegmentDefinition> = (0..5)
            .map(|i| def(&format!("d{i}"), i, i % 2 == 0))
            .collect();
        let refs = || defs.iter().collect::<Vec<_>>();
        let query = |continuous, limit, start| ListQuery {
            continuous,
            limit,
            start,
        };

        let p = page(refs(), &query(None, 2, 0), "/segment/definitions");
        let ids: Vec<&str> = p.segments.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["d4", "d3"]);
        assert_eq!(
            serde_json::to_value(&p.page).unwrap(),
            json!({"totalCount": 5, "totalPages": 3, "sortField": "creationTime",
                   "sort": "desc", "pageSize": 2, "limit": 2})
        );
        assert_eq!(
            p.link.next.as_deref(),
            Some("/segment/definitions?limit=2&start=1")
        );

        let last = page(refs(), &query(None, 2, 2), "/s");
        assert_eq!(last.segments.len(), 1);
        assert_eq!(last.segments[0].id, "d0");
        assert_eq!(last.link, Links::default());
        assert_eq!(serde_json::to_value(&last.link).unwrap(), json!({}));

        let streaming = page(refs(), &query(Some(true), 100, 0), "/s");
        let ids: Vec<&str> = streaming.segments.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["d4", "d2", "d0"]);
        assert_eq!(
            (streaming.page.total_count, streaming.page.total_pages),
            (3, 1)
        );
        let batch = page(refs(), &query(Some(false), 1, 0), "/s");
        assert_eq!(batch.segments[0].id, "d3");
        assert_eq!(
            batch.link.next.as_deref(),
            Some("/s?evaluationInfo.continuous.enabled=false&limit=1&start=1")
        );

        let beyond = page(refs(), &query(None, 2, 9), "/s");
        assert!(beyond.segments.is_empty());
        assert_eq!((beyond.page.total_count, beyond.page.page_size), (5, 0));
        let empty = page(Vec::new(), &query(None, 100, 0), "/s");
        assert_eq!((empty.page.total_count, empty.page.total_pages), (0, 0));
    }
}
