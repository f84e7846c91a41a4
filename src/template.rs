//! Reply templates: literal text with `{variable}` holes, parsed once at load time so that
//! rendering is a few `push_str`s and unknown variables are configuration errors.
//!
//! A leaf that imports nothing of the crate: `config` parses templates while loading
//! `intents.yaml`, and the rule cache (`rules`, which reads that configuration) renders
//! them, so the type sits below both.

use std::fmt;

/// A variable a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The open campaign's text from `post.yaml`, or nothing.
    Campaign,
    /// Dialogue slots (src/dialog): the order reference, size and colour the shopper
    /// named. A template that uses one is chosen only when the dialogue has it.
    Order,
    Size,
    Color,
}

impl Var {
    const ALL: &'static [(&'static str, Var)] = &[
        ("campaign", Var::Campaign),
        ("order", Var::Order),
        ("size", Var::Size),
        ("color", Var::Color),
    ];

    /// Whether the value comes from the dialogue (per request), not from configuration.
    pub fn is_slot(self) -> bool {
        !matches!(self, Var::Campaign)
    }
}

/// Values for the variables of one rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    pub campaign: &'a str,
    pub order: Option<&'a str>,
    pub size: Option<&'a str>,
    pub color: Option<&'a str>,
}

impl Vars<'_> {
    fn get(&self, var: Var) -> Option<&str> {
        match var {
            Var::Campaign => Some(self.campaign),
            Var::Order => self.order,
            Var::Size => self.size,
            Var::Color => self.color,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Var(Var),
}

/// A parsed reply template (the default one is empty).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
    literal_len: usize,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable `{{{0}}}` (known: {{campaign}}, {{order}}, {{size}}, {{color}})")]
    UnknownVar(String),
    #[error("unclosed `{{` (write `{{{{` for a literal brace)")]
    Unclosed,
    #[error("stray `}}` (write `}}}}` for a literal brace)")]
    Stray,
    #[error("empty template")]
    Empty,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(TemplateError::Unclosed),
                        }
                    }
                    let var = Var::ALL
                        .iter()
                        .find(|(n, _)| *n == name.trim())
                        .map(|(_, v)| *v)
                        .ok_or(TemplateError::UnknownVar(name))?;
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text)));
                    }
                    segments.push(Segment::Var(var));
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(TemplateError::Stray),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.len(),
                Segment::Var(_) => 0,
            })
            .sum();
        Ok(Template {
            source: source.to_owned(),
            segments,
            literal_len,
        })
    }

    /// Render with `vars`; a slot variable without a value renders as nothing (callers
    /// choose slot templates only when [`Template::fits`]).
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::with_capacity(self.literal_len + vars.campaign.len());
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(v) => out.push_str(vars.get(*v).unwrap_or("")),
            }
        }
        out
    }

    /// Whether the template uses a dialogue slot (so it is rendered per request).
    pub fn uses_slots(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Var(v) if v.is_slot()))
    }

    /// Whether every slot the template uses has a value in `vars`.
    pub fn fits(&self, vars: &Vars<'_>) -> bool {
        self.segments.iter().all(|s| match s {
            Segment::Var(v) if v.is_slot() => vars.get(*v).is_some(),
            _ => true,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_variables_and_escapes() {
        let t = Template::parse("亲，{campaign}下单{{立减}}").unwrap();
        let vars = Vars {
            campaign: "双11满300减40，",
            ..Vars::default()
        };
        assert_eq!(t.render(&vars), "亲，双11满300减40，下单{立减}");
        assert_eq!(t.render(&Vars::default()), "亲，下单{立减}");
        assert!(!t.uses_slots());
    }

    #[test]
    fn slot_templates_fit_only_with_their_slots() {
        let t = Template::parse("亲，订单{order}的退货已登记").unwrap();
        assert!(t.uses_slots());
        assert!(!t.fits(&Vars::default()));
        let vars = Vars {
            order: Some("3012345678901234"),
            ..Vars::default()
        };
        assert!(t.fits(&vars));
        assert_eq!(t.render(&vars), "亲，订单3012345678901234的退货已登记");
    }

    #[test]
    fn rejects_unknown_and_broken_variables() {
        assert_eq!(
            Template::parse("亲{orders}"),
            Err(TemplateError::UnknownVar("orders".into()))
        );
        assert_eq!(Template::parse("亲{campaign"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("亲}"), Err(TemplateError::Stray));
        assert_eq!(Template::parse("  "), Err(TemplateError::Empty));
    }
}
