//! A minimal HTML page builder: one self-contained file (inline CSS and SVG,
//! no scripts from the network), with every user-supplied string escaped.

use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// A page being assembled.
#[derive(Debug, Default)]
pub struct Page {
    title: String,
    body: String,
    toc: Vec<(String, String)>,
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1500px;margin:0 auto;padding:0 24px 48px;color:#222}\
h1{margin-top:24px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}\
.figs{display:flex;flex-wrap:wrap;gap:16px}.fig{border:1px solid #eee;padding:6px;background:#fff}\
.fig svg{display:block;max-width:100%;height:auto}.fig .cap{font-size:13px;color:#555;margin-top:4px}\
table{border-collapse:collapse;font-size:14px;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.missing{background:#fff8e1;border:1px solid #ffe082;padding:8px 12px}\
nav a{margin-right:14px}code{background:#f4f4f4;padding:1px 4px}";

/// Runs in the browser after load: checks that every figure rendered with a
/// non-empty box and every image loaded, and records the verdict on the
/// root element (`data-selfcheck`), where tests read it.
const SELF_CHECK: &str = "window.addEventListener('load',function(){var f=document.querySelectorAll('.fig'),bad=[];\
f.forEach(function(d){var s=d.querySelector('svg');var r=s?s.getBoundingClientRect():null;if(!r||r.width<50||r.height<50)bad.push(d.dataset.figure);});\
document.querySelectorAll('img').forEach(function(i){if(!i.complete||i.naturalWidth===0)bad.push(i.src);});\
document.documentElement.dataset.selfcheck=(bad.length?'fail '+bad.join(','):'ok')+' figures='+f.length;});";

impl Page {
    /// A page with the given title (escaped).
    pub fn new(title: &str) -> Page {
        Page {
            title: title.to_string(),
            ..Default::default()
        }
    }

    /// Starts a section with an anchor for the table of contents.
    pub fn section(&mut self, id: &str, title: &str) {
        self.toc.push((id.to_string(), title.to_string()));
        let _ = write!(self.body, "<h2 id=\"{}\">{}</h2>\n", escape(id), escape(title));
    }

    /// A paragraph of text (escaped).
    pub fn text(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    /// A note that a section's data is absent, with how to compute it
    /// (both escaped).
    pub fn missing(&mut self, what: &str, how: &str) {
        let _ = writeln!(self.body, "<div class=\"missing\">{} <code>{}</code></div>", escape(what), escape(how));
    }

    /// Trusted HTML produced by this crate (figures' SVG).
    pub fn raw(&mut self, html: &str) {
        self.body.push_str(html);
    }

    /// Opens a row of figures.
    pub fn figs_start(&mut self) {
        self.body.push_str("<div class=\"figs\">\n");
    }

    /// Closes a row of figures.
    pub fn figs_end(&mut self) {
        self.body.push_str("</div>\n");
    }

    /// A figure: inline SVG plus links to its PNG and SVG files.
    pub fn figure(&mut self, svg: &str, file_stem: &str, caption: &str) {
        let stem = escape(file_stem);
        let _ = write!(
            self.body,
            "<div class=\"fig\" data-figure=\"{stem}\">{svg}<div class=\"cap\">{} — <a href=\"{stem}.png\">PNG</a> · <a href=\"{stem}.svg\">SVG</a></div></div>\n",
            escape(caption)
        );
    }

    /// A table; cells are escaped; the first column is left-aligned.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table><tr>");
        for (i, h) in header.iter().enumerate() {
            let _ = write!(self.body, "<th{}>{}</th>", if i == 0 { " class=\"l\"" } else { "" }, escape(h));
        }
        self.body.push_str("</tr>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for (i, c) in r.iter().enumerate() {
                let _ = write!(self.body, "<td{}>{}</td>", if i == 0 { " class=\"l\"" } else { "" }, escape(c));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
    }

    /// The finished document.
    pub fn finish(self) -> String {
        let mut nav = String::new();
        for (id, t) in &self.toc {
            let _ = write!(nav, "<a href=\"#{}\">{}</a>", escape(id), escape(t));
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\n<body><h1>{t}</h1><nav>{nav}</nav>\n{}<script>{SELF_CHECK}</script></body></html>\n",
            self.body,
            t = escape(&self.title)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
        let mut p = Page::new("<b>run</b>");
        p.section("s", "<i>");
        p.table(&["name"], &[vec!["<script>".into()]]);
        let html = p.finish();
        assert!(!html.contains("<script>") && !html.contains("<b>run"));
    }
}
