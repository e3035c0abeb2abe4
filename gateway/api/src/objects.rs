//! `GET /v1/objects/{key}/lightcurve` and `…/alerts` bodies (`GET /v1/objects/{key}` answers an
//! [`crate::object::ObjectSummary`]).

use crate::model::LightPoint;
use crate::object::AlertRef;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An object's light curve (filtered as asked), at the object's `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lightcurve {
    pub key: String,
    pub version: u64,
    pub points: Vec<LightPoint>,
}

/// Every alert that contributed to an object, at the object's `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertHistory {
    pub key: String,
    pub version: u64,
    pub alerts: Vec<AlertRef>,
}

/// `GET /v1/objects/{key}/cutouts`: the stamps kept for an object, per alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cutouts {
    pub key: String,
    pub version: u64,
    /// One entry per alert, sorted by alert id.
    pub alerts: Vec<AlertCutouts>,
}

/// The stamps of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertCutouts {
    #[serde(with = "crate::id_serde")]
    #[schema(value_type = String)]
    pub alert_id: i64,
    pub mjd: f64,
    /// The stamps the alert's schema carries (ZTF: all three; LSST before 6.1: no science
    /// stamp). A nullable stamp the packet left empty answers 404 `cutout_not_found`.
    pub kinds: Vec<crate::model::CutoutKind>,
}
