//! The templates seen before, by their text: the tree each one's text parsed back to, and the
//! digest of the statement that first printed to it.
//!
//! The round-trip check: what is forwarded is the template's text, so the text has to parse
//! back to the very tree that was checked. A parse is a function of the text alone, so the
//! tree a template's text parses to is kept, and every later statement printed to the same
//! text is compared with it: the check itself, without parsing the same text again.
//!
//! The digest: statements that print to one template run as the same prepared statement, so
//! they share its digest (the shape of the first of them; they differ at most by an alias the
//! template gives anyway), and the shape is worked out once per template.
//!
//! An application sends the same few shapes with different values, and each shape prints to
//! one template, so in the steady state a query is parsed once, not twice, and its shape is
//! not printed at all.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sqlparser::ast::Statement;

use super::super::template::{shape_of, Template, Templated, Untemplatable};

/// Templates kept: a busy application's shapes, not an attacker's stream of new ones (those
/// only evict each other, and are worked out as every query was before). With queries of at
/// most `Limits::max_query_bytes`, a few tens of MB at worst.
const KEPT: NonZeroUsize = NonZeroUsize::new(512).unwrap();

/// What is known of a template's text.
pub(super) struct Known {
    /// What the text parses to; None: not exactly one statement.
    tree: Option<Statement>,
    digest: String,
    digest_text: String,
}

/// The templates seen before, the most recently used kept.
pub struct KnownTemplates(Mutex<LruCache<String, Arc<Known>>>);

impl Default for KnownTemplates {
    fn default() -> KnownTemplates {
        KnownTemplates(Mutex::new(LruCache::new(KEPT)))
    }
}

impl KnownTemplates {
    fn get(&self, text: &str) -> Option<Arc<Known>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(text)
            .cloned()
    }

    fn keep(&self, text: &str, known: Arc<Known>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(text.to_string(), known);
    }
}

/// Why a template cannot be forwarded.
#[derive(Debug)]
pub(super) enum Refused {
    /// Its text does not parse back to the tree that was checked.
    RoundTrip,
    /// A literal of the statement cannot be a parameter.
    Literal(Untemplatable),
}

/// What is forwarded for `template`, made from `statement` (the checked statement it came
/// from): refused unless its text parses back to exactly its tree. With `kept`, what is known
/// of the text from before is used, and what is learnt is kept.
pub(super) fn forwarded(
    template: Template,
    statement: Statement,
    kept: Option<&KnownTemplates>,
) -> Result<Templated, Refused> {
    let known = match kept.and_then(|k| k.get(&template.text)) {
        Some(known) => known,
        None => {
            let (digest, digest_text) = shape_of(statement).map_err(Refused::Literal)?;
            let tree = super::parse(&template.text)
                .ok()
                .filter(|again| again.len() == 1)
                .and_then(|mut again| again.pop());
            let known = Arc::new(Known {
                tree,
                digest,
                digest_text,
            });
            if let Some(kept) = kept {
                kept.keep(&template.text, Arc::clone(&known));
            }
            known
        }
    };
    if known.tree.as_ref() != Some(&template.tree) {
        return Err(Refused::RoundTrip);
    }
    Ok(Templated {
        template: template.text,
        params: template.params,
        digest: known.digest.clone(),
        digest_text: known.digest_text.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trusted_host::template::template_of;

    fn statement(sql: &str) -> Statement {
        super::super::parse(sql).unwrap().remove(0)
    }

    /// A template whose text is `text` and whose tree is that of `tree_of`.
    fn template(text: &str, tree_of: &str) -> Template {
        Template {
            text: text.to_string(),
            params: Vec::new(),
            tree: statement(tree_of),
        }
    }

    #[test]
    fn a_known_text_is_still_compared_with_the_tree_at_hand() {
        let kept = KnownTemplates::default();
        let text = "SELECT title FROM film WHERE film_id = ?";
        let first = forwarded(template(text, text), statement(text), Some(&kept));
        assert!(first.is_ok());
        assert!(kept.get(text).is_some(), "the text is kept");
        // The same text, another tree: refused from what was kept, as a parse would refuse it.
        let other = "SELECT title FROM actor WHERE film_id = ?";
        for kept in [Some(&kept), None] {
            assert!(matches!(
                forwarded(template(text, other), statement(other), kept),
                Err(Refused::RoundTrip)
            ));
        }
        assert!(forwarded(template(text, text), statement(text), Some(&kept)).is_ok());
        // What does not parse, or parses to two statements, never matches.
        for bad in ["SELECT FROM", "SELECT 1; SELECT 2"] {
            assert!(matches!(
                forwarded(template(bad, text), statement(text), Some(&kept)),
                Err(Refused::RoundTrip)
            ));
        }
    }

    #[test]
    fn statements_of_one_template_share_the_first_ones_digest() {
        let kept = KnownTemplates::default();
        let digest_of = |sql: &str| {
            let template = template_of(statement(sql), sql).unwrap();
            forwarded(template, statement(sql), Some(&kept)).unwrap()
        };
        let a = digest_of("SELECT title FROM film WHERE film_id = 1");
        let b = digest_of("SELECT title FROM film WHERE film_id = 2");
        assert_eq!(
            (a.digest_text.as_str(), &a.digest),
            ("SELECT title FROM film WHERE film_id = ?", &b.digest)
        );
        assert_eq!(b.params, [contract::wire::Param::Int(2)]);
        // The same template from a statement that names its column itself: the first one's
        // digest, worked out once.
        let unnamed = digest_of("SELECT 1");
        let named = digest_of("SELECT 1 AS `1`");
        assert_eq!(named.template, unnamed.template);
        assert_eq!(
            (named.digest_text.as_str(), named.digest),
            ("SELECT ?", unnamed.digest)
        );
        // Another shape, another template, another digest.
        let c = digest_of("SELECT title FROM film WHERE film_id IN (1, 2)");
        assert_ne!(c.digest, a.digest);
        assert_eq!(c.digest_text, "SELECT title FROM film WHERE film_id IN (?)");
    }
}
