//! The gatekeeper's web pages: server-side rendered HTML, no JavaScript, every value escaped.

use std::fmt::Write;

use contract::wire::{Mode, QueryResponse};

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - dbcluster gatekeeper</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}}\
         nav a{{margin-right:1rem}} textarea{{width:100%;font-family:monospace}}\
         table{{border-collapse:collapse;margin-top:1rem}} td,th{{border:1px solid #bbb;padding:.25rem .5rem;text-align:left}}\
         .error{{color:#a00;font-weight:bold}} .meta{{color:#555}}\
         </style></head><body>\
         <nav><a href=\"/\">Home</a><a href=\"/read\">Read</a><a href=\"/write\">Write</a></nav>\
         <h1>{title}</h1>{body}</body></html>\n",
        title = escape(title)
    )
}

pub fn index() -> String {
    page(
        "Query the cluster",
        "<p>Every query passes the gatekeeper, is checked by the trusted host and is run by the \
         proxy on the cluster: reads on the manager or a replica, writes on the manager.</p>\
         <ul><li><a href=\"/read\">Read</a>: a SELECT, with a routing strategy.</li>\
         <li><a href=\"/write\">Write</a>: an INSERT, UPDATE or DELETE.</li></ul>\
         <p>Programs use <code>POST /api/query</code> with \
         <code>{\"query\": \"...\", \"mode\": \"direct-hit|random|customized|write\"}</code>.</p>",
    )
}

fn read_form(query: &str, selected: Mode) -> String {
    let mut options = String::new();
    for (mode, label) in [
        (Mode::DirectHit, "direct-hit (the manager)"),
        (Mode::Random, "random (a random healthy worker)"),
        (Mode::Customized, "customized (the fastest healthy worker)"),
    ] {
        let selected = if mode == selected { " selected" } else { "" };
        write!(
            options,
            "<option value=\"{}\"{selected}>{label}</option>",
            mode.as_str()
        )
        .unwrap();
    }
    format!(
        "<form method=\"post\" action=\"/read\">\
         <p><label for=\"query\">SELECT query</label><br>\
         <textarea id=\"query\" name=\"query\" rows=\"5\" required>{}</textarea></p>\
         <p><label for=\"strategy\">Strategy</label> <select id=\"strategy\" name=\"strategy\">{options}</select></p>\
         <p><button type=\"submit\">Run read</button></p></form>",
        escape(query)
    )
}

fn write_form(query: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/write\">\
         <p><label for=\"query\">INSERT, UPDATE or DELETE</label><br>\
         <textarea id=\"query\" name=\"query\" rows=\"5\" required>{}</textarea></p>\
         <p><button type=\"submit\">Run write</button></p></form>",
        escape(query)
    )
}

pub fn read(query: &str, mode: Mode) -> String {
    page("Read", &read_form(query, mode))
}

pub fn write(query: &str) -> String {
    page("Write", &write_form(query))
}

/// The outcome of a submitted query, above the form to send another.
pub fn result(query: &str, mode: Mode, outcome: &Result<QueryResponse, String>) -> String {
    let mut body = String::new();
    match outcome {
        Ok(r) => {
            write!(
                body,
                "<p class=\"meta\" id=\"served-by\">Served by <strong>{}</strong> in {:.2} ms ({}).</p>",
                escape(&r.served_by),
                r.elapsed_ms,
                escape(mode.as_str())
            )
            .unwrap();
            if let Some(note) = &r.note {
                write!(body, "<p class=\"meta\">{}</p>", escape(note)).unwrap();
            }
            if let Some(n) = r.affected_rows {
                write!(body, "<p id=\"affected\">{n} row(s) changed.</p>").unwrap();
            } else {
                body.push_str("<table id=\"rows\"><thead><tr>");
                for c in &r.columns {
                    write!(body, "<th>{}</th>", escape(c)).unwrap();
                }
                body.push_str("</tr></thead><tbody>");
                for row in &r.rows {
                    body.push_str("<tr>");
                    for v in row {
                        let text = match v {
                            serde_json::Value::Null => "NULL".to_string(),
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        write!(body, "<td>{}</td>", escape(&text)).unwrap();
                    }
                    body.push_str("</tr>");
                }
                write!(
                    body,
                    "</tbody></table><p class=\"meta\">{} row(s).</p>",
                    r.rows.len()
                )
                .unwrap();
            }
        }
        Err(message) => {
            write!(
                body,
                "<p class=\"error\" id=\"error\">{}</p>",
                escape(message)
            )
            .unwrap();
        }
    }
    body.push_str("<h2>Another query</h2>");
    if mode.is_read() {
        body.push_str(&read_form(query, mode));
    } else {
        body.push_str(&write_form(query));
    }
    page("Result", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_be_markup() {
        assert_eq!(
            escape("<b>\"O'Brien\" & co</b>"),
            "&lt;b&gt;&quot;O&#39;Brien&quot; &amp; co&lt;/b&gt;"
        );
    }

    #[test]
    fn result_page_escapes_values_and_names_the_host() {
        let response = QueryResponse {
            columns: vec!["<col>".into()],
            rows: vec![
                vec![serde_json::json!("<script>alert(1)</script>")],
                vec![serde_json::Value::Null],
            ],
            affected_rows: None,
            served_by: "worker-2".into(),
            elapsed_ms: 1.5,
            note: None,
            truncated: false,
            last_gtid: None,
        };
        let html = result("SELECT '<x>'", Mode::Random, &Ok(response));
        assert!(html.contains("<strong>worker-2</strong>"));
        assert!(html.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"));
        assert!(html.contains("<th>&lt;col&gt;</th>"));
        assert!(html.contains("<td>NULL</td>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("SELECT &#39;&lt;x&gt;&#39;"));
        let html = result("x", Mode::Write, &Err("rejected <by> rule".into()));
        assert!(html.contains("rejected &lt;by&gt; rule"));
    }
}
