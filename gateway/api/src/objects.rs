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
