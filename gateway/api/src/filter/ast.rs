//! The resolved syntax tree and its canonical printing.
//!
//! Shape invariants (the parser keeps them; printing and re-parsing rely on them): an `And`
//! or `Or` has at least two operands and none of them is of its own kind (nested ones are
//! flattened), so the canonical text needs parentheses only around an `Or` inside an `And` or
//! an `And`/`Or` under `not`.

use super::fields::Field;
use std::fmt::{self, Write as _};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }

    /// Whether the operator holds for two operands that compare as `ord`.
    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        }
    }
}

/// A constant in a filter. Numbers are finite.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Written with a decimal point or an exponent (`18.5`, `1e-3`), or an integer too large
    /// for i64.
    Number(f64),
    /// Written as digits only (`18`, `-3`).
    Integer(i64),
    Str(String),
    Bool(bool),
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Literal),
    Field(Field),
}

/// A type-checked filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// At least two operands, none an `And`.
    And(Vec<Expr>),
    /// At least two operands, none an `Or`.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `field op literal` or `field op field`.
    Compare {
        field: Field,
        op: CmpOp,
        rhs: Operand,
    },
    /// `field in (…)`, or `field not in (…)` when `negated`; 1 to `MAX_IN_ITEMS` values.
    In {
        field: Field,
        negated: bool,
        list: Vec<Literal>,
    },
    /// `field is null`, or `field is not null` when `negated`.
    IsNull {
        field: Field,
        negated: bool,
    },
}

impl Expr {
    /// `a and b and …`, flattening operands that are themselves `And`s; one operand is itself.
    pub(crate) fn and(items: Vec<Expr>) -> Expr {
        Expr::join(items, true)
    }

    /// `a or b or …`, flattening operands that are themselves `Or`s; one operand is itself.
    pub(crate) fn or(items: Vec<Expr>) -> Expr {
        Expr::join(items, false)
    }

    fn join(items: Vec<Expr>, and: bool) -> Expr {
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Expr::And(inner) if and => flat.extend(inner),
                Expr::Or(inner) if !and => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            return flat.pop().unwrap_or(Expr::And(Vec::new()));
        }
        if and {
            Expr::And(flat)
        } else {
            Expr::Or(flat)
        }
    }

    fn is_junction(&self) -> bool {
        matches!(self, Expr::And(_) | Expr::Or(_))
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Integer(i) => write!(f, "{i}"),
            // Debug is the shortest text that parses back to the same bits, and always has a
            // '.' or an exponent, so it re-reads as a number rather than an integer.
            Literal::Number(x) => write!(f, "{x:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Str(s) => {
                f.write_char('\'')?;
                for c in s.chars() {
                    if c == '\'' {
                        f.write_char('\'')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('\'')
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                let and = matches!(self, Expr::And(_));
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if and { " and " } else { " or " })?;
                    }
                    if and && matches!(item, Expr::Or(_)) {
                        write!(f, "({item})")?;
                    } else {
                        write!(f, "{item}")?;
                    }
                }
                Ok(())
            }
            Expr::Not(inner) if inner.is_junction() => write!(f, "not ({inner})"),
            Expr::Not(inner) => write!(f, "not {inner}"),
            Expr::Compare { field, op, rhs: Operand::Literal(lit) } => write!(f, "{field} {} {lit}", op.as_str()),
            Expr::Compare { field, op, rhs: Operand::Field(other) } => write!(f, "{field} {} {other}", op.as_str()),
            Expr::In { field, negated, list } => {
                write!(f, "{field} {}in (", if *negated { "not " } else { "" })?;
                for (i, lit) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{lit}")?;
                }
                f.write_char(')')
            }
            Expr::IsNull { field, negated: false } => write!(f, "{field} is null"),
            Expr::IsNull { field, negated: true } => write!(f, "{field} is not null"),
        }
    }
}
