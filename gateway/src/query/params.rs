//! The query parameters of `GET /v1/cone` and `GET /v1/objects`, parsed and checked: each
//! bad value is a 400 that names it and says what was expected.

use super::cursor::Cursor;
use crate::error::ApiError;
use lightkeeper_api::filter::{Field, Filter, Order};
use lightkeeper_api::query::{DEFAULT_LIMIT, MAX_LIMIT, MAX_RADIUS_ARCSEC};

/// `GET /v1/cone`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConeQuery {
    pub ra: f64,
    pub dec: f64,
    pub radius_arcsec: f64,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub partial: bool,
}

impl ConeQuery {
    pub fn radius_deg(&self) -> f64 {
        self.radius_arcsec / 3600.0
    }
}

/// `GET /v1/objects`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectsQuery {
    pub filter: Option<Filter>,
    pub order: Order,
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub partial: bool,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn number(name: &str, v: &str) -> Result<f64, ApiError> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| bad(format!("{name} must be a number, got {v:?}")))
}

fn limit(v: &str) -> Result<usize, ApiError> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(bad(format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {v:?}"))),
    }
}

fn boolean(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad(format!("{name} must be true or false, got {v:?}"))),
    }
}

fn filter(v: &str) -> Result<Filter, ApiError> {
    Filter::parse(v).map_err(|e| ApiError::bad_request("bad_filter", format!("where: {e}")))
}

fn once<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<(), ApiError> {
    if slot.replace(v).is_some() {
        return Err(bad(format!("{name} is given more than once")));
    }
    Ok(())
}

impl ConeQuery {
    /// Parses a query string (without `max_lag`, which routing takes).
    pub fn parse(raw: Option<&str>) -> Result<ConeQuery, ApiError> {
        let (mut ra, mut dec, mut radius, mut f, mut lim, mut partial) = (None, None, None, None, None, None);
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "ra" => once(&mut ra, "ra", number("ra", &v)?)?,
                "dec" => once(&mut dec, "dec", number("dec", &v)?)?,
                "radius_arcsec" => once(&mut radius, "radius_arcsec", number("radius_arcsec", &v)?)?,
                "where" => once(&mut f, "where", filter(&v)?)?,
                "limit" => once(&mut lim, "limit", limit(&v)?)?,
                "partial" => once(&mut partial, "partial", boolean("partial", &v)?)?,
                other => {
                    return Err(bad(format!(
                        "unknown query parameter {other:?}; expected ra, dec, radius_arcsec, where, limit, partial, max_lag"
                    )))
                }
            }
        }
        let ra = ra.ok_or_else(|| bad("ra (degrees, 0 to 360) is required".into()))?;
        let dec = dec.ok_or_else(|| bad("dec (degrees, -90 to 90) is required".into()))?;
        let radius_arcsec =
            radius.ok_or_else(|| bad(format!("radius_arcsec (up to {MAX_RADIUS_ARCSEC}) is required")))?;
        if !(0.0..=360.0).contains(&ra) {
            return Err(bad(format!("ra must be between 0 and 360 degrees, got {ra}")));
        }
        if !(-90.0..=90.0).contains(&dec) {
            return Err(bad(format!("dec must be between -90 and 90 degrees, got {dec}")));
        }
        if !(radius_arcsec > 0.0 && radius_arcsec <= MAX_RADIUS_ARCSEC) {
            return Err(bad(format!(
                "radius_arcsec must be above 0 and at most {MAX_RADIUS_ARCSEC} (1 degree), got {radius_arcsec}"
            )));
        }
        Ok(ConeQuery {
            ra,
            dec,
            radius_arcsec,
            filter: f,
            limit: lim.unwrap_or(DEFAULT_LIMIT),
            partial: partial.unwrap_or(false),
        })
    }
}

impl ObjectsQuery {
    /// Parses a query string (without `max_lag`, which routing takes).
    pub fn parse(raw: Option<&str>) -> Result<ObjectsQuery, ApiError> {
        let (mut f, mut order, mut lim, mut cursor, mut partial) = (None, None, None, None, None);
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "where" => once(&mut f, "where", filter(&v)?)?,
                "order" => once(
                    &mut order,
                    "order",
                    Order::parse(&v).map_err(|e| bad(format!("order: {e}; e.g. order=last_mjd desc")))?,
                )?,
                "limit" => once(&mut lim, "limit", limit(&v)?)?,
                "cursor" => once(&mut cursor, "cursor", v.into_owned())?,
                "partial" => once(&mut partial, "partial", boolean("partial", &v)?)?,
                other => {
                    return Err(bad(format!(
                        "unknown query parameter {other:?}; expected where, order, limit, cursor, partial, max_lag"
                    )))
                }
            }
        }
        let order = order.unwrap_or(Order { field: Field::Key, desc: false });
        let cursor = cursor.map(|c| Cursor::decode(&c, &order)).transpose()?;
        Ok(ObjectsQuery {
            filter: f,
            order,
            limit: lim.unwrap_or(DEFAULT_LIMIT),
            cursor,
            partial: partial.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cone_err(q: &str) -> String {
        let e = ConeQuery::parse(Some(q)).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{q}");
        format!("{}: {e}", e.code())
    }

    #[test]
    fn cone_parameters_are_checked() {
        let q = ConeQuery::parse(Some("ra=10&dec=-5.5&radius_arcsec=60&where=n_detections%20%3E%202&limit=5")).unwrap();
        assert_eq!((q.ra, q.dec, q.radius_arcsec, q.limit, q.partial), (10.0, -5.5, 60.0, 5, false));
        assert!(q.filter.is_some());
        assert!(cone_err("ra=400&dec=0&radius_arcsec=1").contains("ra must be between 0 and 360"));
        assert!(cone_err("ra=1&dec=91&radius_arcsec=1").contains("dec must be between -90 and 90"));
        assert!(cone_err("ra=1&dec=1&radius_arcsec=3601").contains("at most 3600"));
        assert!(cone_err("ra=1&dec=1&radius_arcsec=0").contains("above 0"));
        assert!(cone_err("ra=x&dec=1&radius_arcsec=1").contains("ra must be a number"));
        assert!(cone_err("ra=nan&dec=1&radius_arcsec=1").contains("ra must be a number"));
        assert!(cone_err("dec=1&radius_arcsec=1").contains("ra (degrees"));
        assert!(cone_err("ra=1&dec=1&radius_arcsec=1&limit=100000").contains("limit must be"));
        assert!(cone_err("ra=1&dec=1&radius_arcsec=1&where=mag_q%3C1").starts_with("bad_filter: where: at position 0"));
        assert!(cone_err("ra=1&dec=1&radius_arcsec=1&bogus=1").contains("unknown query parameter \"bogus\""));
        assert!(cone_err("ra=1&ra=2&dec=1&radius_arcsec=1").contains("more than once"));
    }

    #[test]
    fn objects_parameters_are_checked() {
        let q = ObjectsQuery::parse(Some("where=survey%3D%27ztf%27&order=last_mjd%20desc&limit=10")).unwrap();
        assert_eq!(q.order, Order { field: Field::LastMjd, desc: true });
        assert_eq!(ObjectsQuery::parse(None).unwrap().order, Order { field: Field::Key, desc: false });
        for (q, want) in [
            ("limit=0", "limit must be"),
            ("order=nope", "order:"),
            ("cursor=garbage!", "cursor"),
            ("where=survey%3D18", "type mismatch"),
        ] {
            let e = ObjectsQuery::parse(Some(q)).unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{q}");
            assert!(e.to_string().contains(want), "{q}: {e}");
        }
    }
}
