//! The round-trip check: what is forwarded is the template's text, so the text has to parse
//! back to the very tree that was checked. A parse is a function of the text alone, so the
//! tree a template's text parses to is kept, by the text, and every later statement printed to
//! the same text is compared with it: the check itself, without parsing the same text again.
//! An application sends the same few shapes with different values, and each shape prints to
//! one template, so in the steady state a query is parsed once, not twice.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sqlparser::ast::Statement;

/// Templates kept: a busy application's shapes, not an attacker's stream of new ones (those
/// only evict each other, and are parsed twice as every query was before). With queries of
/// at most `Limits::max_query_bytes`, a few tens of MB at worst.
const KEPT: NonZeroUsize = NonZeroUsize::new(512).unwrap();

/// The trees that templates' texts parsed to, the most recently used kept.
pub struct ParsedTemplates(Mutex<LruCache<String, Arc<Statement>>>);

impl Default for ParsedTemplates {
    fn default() -> ParsedTemplates {
        ParsedTemplates(Mutex::new(LruCache::new(KEPT)))
    }
}

impl ParsedTemplates {
    fn get(&self, text: &str) -> Option<Arc<Statement>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(text)
            .cloned()
    }

    fn keep(&self, text: &str, tree: Arc<Statement>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(text.to_string(), tree);
    }
}

/// Whether `text` parses to exactly `tree`, as one statement; with `kept`, the tree of a text
/// parsed before is taken from there.
pub(super) fn round_trips(text: &str, tree: &Statement, kept: Option<&ParsedTemplates>) -> bool {
    if let Some(parsed) = kept.and_then(|k| k.get(text)) {
        return *parsed == *tree;
    }
    let Ok(mut again) = super::parse(text) else {
        return false;
    };
    if again.len() != 1 {
        return false;
    }
    let parsed = again.remove(0);
    let same = parsed == *tree;
    if let Some(kept) = kept {
        kept.keep(text, Arc::new(parsed));
    }
    same
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(sql: &str) -> Statement {
        super::super::parse(sql).unwrap().remove(0)
    }

    #[test]
    fn a_kept_text_is_still_compared_with_the_tree_at_hand() {
        let kept = ParsedTemplates::default();
        let text = "SELECT title FROM film WHERE film_id = ?";
        assert!(round_trips(text, &tree(text), Some(&kept)));
        assert!(kept.get(text).is_some(), "the text's tree is kept");
        // The same text, another tree: refused from what was kept, as a parse would refuse it.
        let other = tree("SELECT title FROM actor WHERE film_id = ?");
        assert!(!round_trips(text, &other, Some(&kept)));
        assert!(!round_trips(text, &other, None));
        assert!(round_trips(text, &tree(text), Some(&kept)));
        // What does not parse, or parses to two statements, never matches.
        assert!(!round_trips("SELECT FROM", &tree(text), Some(&kept)));
        assert!(!round_trips(
            &format!("{text}; {text}"),
            &tree(text),
            Some(&kept)
        ));
    }
}
