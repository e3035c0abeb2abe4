//! Recursive-descent parser: tokens to a resolved, type-checked [`Expr`], enforcing the bounds.

use super::ast::{CmpOp, Expr, Literal, Operand};
use super::fields::{Field, FieldType};
use super::lexer::{tokenize, Keyword, Tok, Token};
use super::{snippet, FilterError, MAX_DEPTH, MAX_FILTER_BYTES, MAX_IN_ITEMS, MAX_TERMS};

/// Parses and checks a whole filter.
pub(crate) fn parse(text: &str) -> Result<Expr, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        let mut at = MAX_FILTER_BYTES;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        return Err(FilterError::new(
            at,
            format!("filter too long: {} bytes, the limit (MAX_FILTER_BYTES) is {MAX_FILTER_BYTES} bytes", text.len()),
        ));
    }
    let tokens = tokenize(text)?;
    let mut p = Parser { text, tokens, next: 0, depth: 0, terms: 0 };
    if p.peek().tok == Tok::End {
        return Err(FilterError::new(0, "the filter is empty: expected a test such as 'mag_g < 18'"));
    }
    let expr = p.or_expr()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let msg = format!("expected 'and', 'or' or the end of the filter, found {}", p.found(t));
        return Err(FilterError::new(t.start, msg));
    }
    Ok(expr)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
    depth: usize,
    terms: usize,
}

/// What type a literal has, for checking and messages; numbers and integers are both "a number".
fn literal_type(l: &Literal) -> FieldType {
    match l {
        Literal::Number(_) => FieldType::Number,
        Literal::Integer(_) => FieldType::Integer,
        Literal::Str(_) => FieldType::String,
        Literal::Bool(_) => FieldType::Bool,
    }
}

fn compatible(a: FieldType, b: FieldType) -> bool {
    a == b || (a.is_numeric() && b.is_numeric())
}

/// A literal's type in words: "a number" for integers too, since they mix freely.
fn described(t: FieldType) -> &'static str {
    if t.is_numeric() {
        "a number"
    } else {
        t.with_article()
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token<'a> {
        // The last token is End and is never consumed, so `next` stays in range.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.next += 1;
        }
        t
    }

    fn src(&self, t: &Token<'_>) -> &'a str {
        &self.text[t.start..t.end]
    }

    /// How a token is named in "found …": its text, quoted, or "the end of the filter".
    fn found(&self, t: &Token<'_>) -> String {
        match t.tok {
            Tok::End => "the end of the filter".to_string(),
            Tok::Literal(Literal::Str(_)) => snippet(self.src(t)).into_owned(),
            _ => format!("'{}'", snippet(self.src(t))),
        }
    }

    fn error<T>(&self, t: &Token<'_>, expected: &str) -> Result<T, FilterError> {
        Err(FilterError::new(t.start, format!("expected {expected}, found {}", self.found(t))))
    }

    fn enter(&mut self, at: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(
                at,
                format!(
                    "filter too deeply nested: the limit (MAX_DEPTH) is {MAX_DEPTH} levels of parentheses and 'not'"
                ),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.and_expr()?];
        while self.peek().tok == Tok::Keyword(Keyword::Or) {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(Expr::or(items))
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.unary()?];
        while self.peek().tok == Tok::Keyword(Keyword::And) {
            self.bump();
            items.push(self.unary()?);
        }
        Ok(Expr::and(items))
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.peek().tok != Tok::Keyword(Keyword::Not) {
            return self.primary();
        }
        let not = self.bump();
        self.enter(not.start)?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::LParen => {
                self.bump();
                self.enter(t.start)?;
                let inner = self.or_expr()?;
                let close = self.peek().clone();
                if close.tok != Tok::RParen {
                    return self.error(&close, &format!("')' to close the '(' at position {}", t.start));
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Ident(name) => {
                let field = self.field(&t, name)?;
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(FilterError::new(
                        t.start,
                        format!("too many terms: the limit (MAX_TERMS) is {MAX_TERMS} comparisons and tests"),
                    ));
                }
                self.bump();
                self.test(field, name)
            }
            _ if literal(&t.tok).is_some() => self.literal_first(&t),
            _ => self.error(&t, "a field name, '(' or 'not'"),
        }
    }

    fn field(&self, t: &Token<'_>, name: &str) -> Result<Field, FilterError> {
        Field::parse(name).ok_or_else(|| {
            let hint = match Field::suggest(name) {
                Some(f) => format!("; did you mean '{f}'?"),
                None => " (GET /v1/fields lists the fields)".to_string(),
            };
            FilterError::new(t.start, format!("unknown field '{}'{hint}", snippet(name)))
        })
    }

    /// `18 < mag_g`: say to put the field first.
    fn literal_first(&self, lit: &Token<'_>) -> Result<Expr, FilterError> {
        let (op, other) = (&self.tokens[self.next + 1], self.tokens.get(self.next + 2));
        if let (Tok::Op(op), Some(Token { tok: Tok::Ident(name), .. })) = (&op.tok, other) {
            let msg = format!(
                "a comparison starts with the field: write '{} {} {}' instead",
                snippet(name),
                op.flipped().as_str(),
                snippet(self.src(lit))
            );
            return Err(FilterError::new(lit.start, msg));
        }
        self.error(lit, "a field name (a comparison is 'field op value')")
    }

    /// After the field: the operator and what follows it.
    fn test(&mut self, field: Field, name: &str) -> Result<Expr, FilterError> {
        let t = self.bump();
        match t.tok {
            Tok::Op(op) => {
                let rhs = self.bump();
                if let Some(lit) = literal(&rhs.tok) {
                    self.check(field, &rhs, &lit, "")?;
                    self.check_op(field, op, &t)?;
                    return Ok(Expr::Compare { field, op, rhs: Operand::Literal(lit) });
                }
                match rhs.tok {
                    Tok::Ident(other_name) => {
                        let other = self.field(&rhs, other_name)?;
                        if !compatible(field.ty(), other.ty()) {
                            let msg = format!(
                                "type mismatch: field '{field}' is {}, but field '{other}' is {}",
                                field.ty().with_article(),
                                other.ty().with_article()
                            );
                            return Err(FilterError::new(rhs.start, msg));
                        }
                        self.check_op(field, op, &t)?;
                        Ok(Expr::Compare { field, op, rhs: Operand::Field(other) })
                    }
                    Tok::Keyword(Keyword::Null) => {
                        let instead = match op {
                            CmpOp::Eq => format!("write '{name} is null'"),
                            CmpOp::Ne => format!("write '{name} is not null'"),
                            _ => "use 'is null' or 'is not null'".to_string(),
                        };
                        let msg = format!("a comparison with null is never true; {instead}");
                        Err(FilterError::new(rhs.start, msg))
                    }
                    _ => self.error(&rhs, &format!("a value or a field after '{name} {}'", op.as_str())),
                }
            }
            Tok::Keyword(Keyword::In) => self.in_list(field, false),
            Tok::Keyword(Keyword::Not) => {
                let t = self.bump();
                if t.tok != Tok::Keyword(Keyword::In) {
                    return self.error(&t, &format!("'in' after '{name} not'"));
                }
                self.in_list(field, true)
            }
            Tok::Keyword(Keyword::Is) => {
                let mut t = self.bump();
                let negated = t.tok == Tok::Keyword(Keyword::Not);
                if negated {
                    t = self.bump();
                }
                if t.tok != Tok::Keyword(Keyword::Null) {
                    let after = if negated { "'is not'" } else { "'is'" };
                    let what = if negated { "'null'" } else { "'null' or 'not null'" };
                    return self.error(&t, &format!("{what} after {after}"));
                }
                Ok(Expr::IsNull { field, negated })
            }
            _ => self.error(&t, &format!("a comparison operator after field '{name}'")),
        }
    }

    /// After `in` / `not in`: `( literal {, literal} )`.
    fn in_list(&mut self, field: Field, negated: bool) -> Result<Expr, FilterError> {
        let open = self.bump();
        if open.tok != Tok::LParen {
            return self.error(&open, "'(' after 'in'");
        }
        let mut list = Vec::new();
        loop {
            let t = self.bump();
            let Some(lit) = literal(&t.tok) else {
                if t.tok == Tok::Keyword(Keyword::Null) {
                    let msg = "an 'in' list cannot hold null; test for it with 'is null'";
                    return Err(FilterError::new(t.start, msg));
                }
                return self.error(&t, "a value in the 'in' list");
            };
            if list.len() == MAX_IN_ITEMS {
                let msg = format!("'in' list too long: the limit (MAX_IN_ITEMS) is {MAX_IN_ITEMS} values");
                return Err(FilterError::new(t.start, msg));
            }
            self.check(field, &t, &lit, " in the 'in' list")?;
            list.push(lit);
            let sep = self.bump();
            match sep.tok {
                Tok::Comma => {}
                Tok::RParen => break,
                _ => return self.error(&sep, "',' or ')' in the 'in' list"),
            }
        }
        Ok(Expr::In { field, negated, list })
    }

    /// The literal at `t` has a type that `field` compares with.
    fn check(&self, field: Field, t: &Token<'_>, lit: &Literal, place: &str) -> Result<(), FilterError> {
        let ty = literal_type(lit);
        if compatible(field.ty(), ty) {
            return Ok(());
        }
        let msg = format!(
            "type mismatch: field '{field}' is {}, but {}{place} is {}",
            field.ty().with_article(),
            snippet(self.src(t)),
            described(ty)
        );
        Err(FilterError::new(t.start, msg))
    }

    /// Bools are only equal or not.
    fn check_op(&self, field: Field, op: CmpOp, at: &Token<'_>) -> Result<(), FilterError> {
        if field.ty() == FieldType::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            let msg = format!("operator '{}' does not apply to bool field '{field}'; use '=' or '!='", op.as_str());
            return Err(FilterError::new(at.start, msg));
        }
        Ok(())
    }
}

fn literal(t: &Tok<'_>) -> Option<Literal> {
    match t {
        Tok::Literal(l) => Some(l.clone()),
        Tok::Keyword(Keyword::True) => Some(Literal::Bool(true)),
        Tok::Keyword(Keyword::False) => Some(Literal::Bool(false)),
        _ => None,
    }
}
