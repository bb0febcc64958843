//! Paged lists, in seed 003's shape: `?limit=` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`])
//! and `?start=` (the page, from 0) ask; the answer carries the page's items beside
//! `"page": {totalCount, totalPages, sortField, sort, pageSize, limit}` and
//! `"link": {next}` (the next page's path and query, when there is one).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;

use crate::problem::Problem;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

/// What page a list request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Items per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// The page, from 0.
    pub start: usize,
}

impl Default for Paging {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            start: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Items of the whole list, on every page.
    pub total_count: usize,
    pub total_pages: usize,
    pub sort_field: &'static str,
    pub sort: &'static str,
    /// Items on this page.
    pub page_size: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Links {
    /// The next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Paging {
    /// `limit` and `start` from a query string's values (absent or empty: the defaults); the
    /// error names the parameter.
    pub fn parse(limit: Option<&str>, start: Option<&str>) -> Result<Self, String> {
        let limit = match limit.filter(|v| !v.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "the query parameter limit must be a whole number from 1 to {MAX_LIMIT} (got {raw:?})"
                    ))
                }
            },
        };
        let start = match start.filter(|v| !v.is_empty()) {
            None => 0,
            Some(raw) => raw.parse::<usize>().map_err(|_| {
                format!("the query parameter start must be a page number from 0 (got {raw:?})")
            })?,
        };
        Ok(Self { limit, start })
    }

    /// This page of `items` (already in their order, `sort_field` `sort`), with the page object
    /// and the link to the next page of `path` (`extra`: other query parameters to keep,
    /// `name=value&` each).
    pub fn page<T>(
        &self,
        items: Vec<T>,
        (sort_field, sort): (&'static str, &'static str),
        path: &str,
        extra: &str,
    ) -> (Vec<T>, PageInfo, Links) {
        let total_count = items.len();
        let total_pages = total_count.div_ceil(self.limit);
        let shown: Vec<T> = items
            .into_iter()
            .skip(self.start.saturating_mul(self.limit))
            .take(self.limit)
            .collect();
        let next = (self.start.saturating_add(1) < total_pages).then(|| {
            format!(
                "{path}?{extra}limit={}&start={}",
                self.limit,
                self.start + 1
            )
        });
        let info = PageInfo {
            total_count,
            total_pages,
            sort_field,
            sort,
            page_size: shown.len(),
            limit: self.limit,
        };
        (shown, info, Links { next })
    }
}

/// `limit` and `start` of the request's query string; a bad one is a 400 naming it.
impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let value = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        Paging::parse(value("limit"), value("start")).map_err(Problem::bad_request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_cut_and_linked() {
        let p = Paging::parse(Some("2"), Some("1")).unwrap();
        let (items, info, link) = p.page(vec![1, 2, 3, 4, 5], ("createdAt", "asc"), "/streams", "");
        assert_eq!(items, vec![3, 4]);
        assert_eq!(
            (info.total_count, info.total_pages, info.page_size),
            (5, 3, 2)
        );
        assert_eq!(link.next.as_deref(), Some("/streams?limit=2&start=2"));
        let (items, _, link) = Paging::parse(Some("2"), Some("2")).unwrap().page(
            vec![1, 2, 3, 4, 5],
            ("createdAt", "asc"),
            "/streams",
            "",
        );
        assert_eq!((items, link.next), (vec![5], None));
        assert_eq!(Paging::parse(None, None).unwrap(), Paging::default());
        assert!(Paging::parse(Some("0"), None)
            .unwrap_err()
            .contains("limit"));
        assert!(Paging::parse(Some("1001"), None).is_err());
        assert!(Paging::parse(None, Some("-1"))
            .unwrap_err()
            .contains("start"));
    }
}
