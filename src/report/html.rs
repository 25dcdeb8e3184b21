//! A minimal HTML page builder: one self-contained file (inline CSS and SVG,
//! no scripts from the network), with every user-supplied string escaped.

use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(s: &str) -> String {
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

/// One frame of [`Page::animation_3d`].
#[derive(Debug, Clone)]
pub(crate) struct Frame3d {
    /// The slider's label (and the frame's name).
    pub(crate) label: String,
    /// Values, row-major over the lattice; non-finite ones are gaps.
    pub(crate) z: Vec<f64>,
    /// The path so far, `[x, y, z]`.
    pub(crate) path: Vec<[f64; 3]>,
    /// The frame's own point, `[x, y, z]`.
    pub(crate) point: [f64; 3],
}

/// The finite range of `values`, when there is a finite value.
fn finite_range(
    values: impl IntoIterator<Item = impl std::borrow::Borrow<f64>>,
) -> Option<(f64, f64)> {
    let mut r: Option<(f64, f64)> = None;
    for v in values {
        let v = *v.borrow();
        if v.is_finite() {
            r = Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        }
    }
    r
}

/// JSON embedded in a script element: `<` escaped so no string can close it.
fn js(v: &serde_json::Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

/// A plotly surface trace of `z` (row-major over `ys` × `xs`, non-finite
/// values as gaps), its colours over `range` when given.
fn surface_trace(
    xs: &[f64],
    ys: &[f64],
    z: &[f64],
    z_label: &str,
    range: Option<(f64, f64)>,
) -> serde_json::Value {
    let rows: Vec<Vec<Option<f64>>> = z
        .chunks(xs.len().max(1))
        .map(|r| r.iter().map(|v| v.is_finite().then_some(*v)).collect())
        .collect();
    let mut t = serde_json::json!({ "type": "surface", "x": xs, "y": ys, "z": rows, "colorscale": "Viridis",
        "colorbar": { "title": { "text": z_label }, "len": 0.75, "thickness": 16 },
        "contours": { "z": { "show": true, "usecolormap": true, "project": { "z": true } } } });
    if let Some((lo, hi)) = range {
        t["cmin"] = serde_json::json!(lo);
        t["cmax"] = serde_json::json!(hi);
    }
    t
}

/// The layout of a 3-D scene showing the whole surface: the z axis spans
/// `z_range` (plus 5 %), x and y in proportion to their spans (within
/// 1:3), z 0.7 of the larger, the camera from above at the box's middle,
/// margins that keep the axis titles inside the figure.
fn scene_layout(
    title: &str,
    (xs, ys): (&[f64], &[f64]),
    z_range: Option<(f64, f64)>,
    (x_label, y_label, z_label): (&str, &str, &str),
) -> serde_json::Value {
    let z_range = match z_range {
        Some((lo, hi)) if lo < hi => {
            let d = (hi - lo) * 0.05;
            serde_json::json!([lo - d, hi + d])
        }
        Some((lo, hi)) => serde_json::json!([lo - 0.5, hi + 0.5]),
        None => serde_json::Value::Null,
    };
    let span = |v: &[f64]| finite_range(v.iter().copied()).map_or(f64::NAN, |(lo, hi)| hi - lo);
    let (sx, sy) = (span(xs), span(ys));
    let (ax, ay) = if sx > 0.0 && sy > 0.0 && sx.is_finite() && sy.is_finite() {
        let r = (sx / sy).clamp(1.0 / 3.0, 3.0);
        if r >= 1.0 {
            (1.0, 1.0 / r)
        } else {
            (r, 1.0)
        }
    } else {
        (1.0, 1.0)
    };
    serde_json::json!({ "title": { "text": title }, "width": 720, "height": 560, "autosize": false,
        "margin": { "l": 10, "r": 10, "t": 50, "b": 10 },
        "scene": {
            "xaxis": { "title": { "text": x_label } },
            "yaxis": { "title": { "text": y_label } },
            "zaxis": { "title": { "text": z_label }, "range": z_range },
            "aspectmode": "manual",
            "aspectratio": { "x": ax, "y": ay, "z": 0.7 },
            "camera": { "eye": { "x": 1.45, "y": -1.45, "z": 0.95 }, "center": { "x": 0, "y": 0, "z": -0.12 } },
            "domain": { "x": [0.0, 0.92], "y": [0.0, 1.0] }
        } })
}

/// A page being assembled.
#[derive(Debug, Default)]
pub(crate) struct Page {
    title: String,
    body: String,
    toc: Vec<(String, String)>,
    plots_3d: usize,
}

/// plotly.js (gl3d bundle, MIT), inlined once into pages with 3-D plots so
/// the page works offline.
const PLOTLY_JS: &str = include_str!("../../assets/plotly/plotly-gl3d.min.js");

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1600px;margin:0 auto;padding:0 24px 48px;color:#222}\
h1{margin-top:24px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}\
.figs{display:flex;flex-wrap:wrap;gap:16px}.fig{border:1px solid #eee;padding:6px;background:#fff}\
.fig svg{display:block;max-width:100%;height:auto}.fig .cap{font-size:13px;color:#555;margin-top:4px}\
table{border-collapse:collapse;font-size:14px;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.missing{background:#fff8e1;border:1px solid #ffe082;padding:8px 12px}\
nav a{margin-right:14px}code{background:#f4f4f4;padding:1px 4px}";

/// Runs in the browser after load: checks that every figure rendered with a
/// non-empty box and every image loaded, and records the verdict on the
/// root element (`data-selfcheck`), where tests read it.
const SELF_CHECK: &str = "window.addEventListener('load',function(){var f=document.querySelectorAll('[data-figure]'),bad=[];\
f.forEach(function(d){var s=d.querySelector('svg');var r=s?s.getBoundingClientRect():null;if(!r||r.width<50||r.height<50)bad.push(d.dataset.figure);});\
document.querySelectorAll('img').forEach(function(i){if(!i.complete||i.naturalWidth===0)bad.push(i.src);});\
var g=document.querySelectorAll('[data-figure3d]');g.forEach(function(d){if(!d.querySelector('.js-plotly-plot canvas'))bad.push(d.dataset.figure3d);});\
var a=document.querySelectorAll('[data-animation]'),fr=0;a.forEach(function(d){var p=document.getElementById(d.dataset.animation),t=p&&p._transitionData,n=t&&t._frames?t._frames.length:0;if(String(n)!==d.dataset.frames)bad.push(d.dataset.animation+' has '+n+' of '+d.dataset.frames+' frames');fr+=n;});\
document.documentElement.dataset.selfcheck=(bad.length?'fail '+bad.join(','):'ok')+' figures='+f.length+' surfaces3d='+g.length+' animations='+a.length+' frames='+fr;});";

impl Page {
    /// A page with the given title (escaped).
    pub(crate) fn new(title: &str) -> Page {
        Page {
            title: title.to_string(),
            ..Default::default()
        }
    }

    /// Starts a section with an anchor for the table of contents.
    pub(crate) fn section(&mut self, id: &str, title: &str) {
        self.toc.push((id.to_string(), title.to_string()));
        let _ = writeln!(
            self.body,
            "<h2 id=\"{}\">{}</h2>",
            escape(id),
            escape(title)
        );
    }

    /// A paragraph of text (escaped).
    pub(crate) fn text(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
    }

    /// A note that a section's data is absent, with how to compute it
    /// (both escaped).
    pub(crate) fn missing(&mut self, what: &str, how: &str) {
        let _ = writeln!(
            self.body,
            "<div class=\"missing\">{} <code>{}</code></div>",
            escape(what),
            escape(how)
        );
    }

    /// Opens a row of figures.
    pub(crate) fn figs_start(&mut self) {
        self.body.push_str("<div class=\"figs\">\n");
    }

    /// Closes a row of figures.
    pub(crate) fn figs_end(&mut self) {
        self.body.push_str("</div>\n");
    }

    /// A figure: inline SVG plus links to its PNG and SVG files.
    pub(crate) fn figure(&mut self, svg: &str, file_stem: &str, caption: &str) {
        let stem = escape(file_stem);
        let _ = writeln!(
            self.body,
            "<div class=\"fig\" data-figure=\"{stem}\">{svg}<div class=\"cap\">{} — <a href=\"{stem}.png\">PNG</a> · <a href=\"{stem}.svg\">SVG</a></div></div>",
            escape(caption)
        );
    }

    /// An interactive 3-D surface (plotly.js, inlined once per page): `z` is
    /// row-major over `ys` × `xs`; non-finite values are left as gaps. The
    /// scene is framed to show the whole surface (see [`scene_layout`]).
    pub(crate) fn surface_3d(
        &mut self,
        title: &str,
        (xs, ys, z): (&[f64], &[f64], &[f64]),
        labels: (&str, &str, &str),
    ) {
        let id = format!("surface3d-{}", self.plots_3d);
        self.plots_3d += 1;
        let data = serde_json::json!([surface_trace(xs, ys, z, labels.2, None)]);
        let layout = scene_layout(title, (xs, ys), finite_range(z), labels);
        let _ = writeln!(
            self.body,
            "<div class=\"fig\" data-figure3d=\"{id}\"><div id=\"{id}\" style=\"width:720px;height:560px\"></div><div class=\"cap\">{} — drag to rotate</div><script>window.__surfaces3d=(window.__surfaces3d||[]).concat([[\"{id}\",{},{}]]);</script></div>",
            escape(title),
            js(&data),
            js(&layout)
        );
    }

    /// An animated 3-D surface (plotly frames with a slider and play and
    /// pause buttons): one frame per entry of `frames`, every frame on the
    /// lattice `xs` × `ys`, on one z range and colour scale, with a path
    /// and a current point drawn over the surface. The self-check counts
    /// the frames plotly registered.
    pub(crate) fn animation_3d(
        &mut self,
        title: &str,
        (xs, ys): (&[f64], &[f64]),
        frames: &[Frame3d],
        labels: (&str, &str, &str),
    ) {
        let Some(first) = frames.first() else {
            return;
        };
        let id = format!("surface3d-{}", self.plots_3d);
        self.plots_3d += 1;
        let range = finite_range(frames.iter().flat_map(|f| f.z.iter()).copied());
        let traces = |f: &Frame3d| {
            let (px, (py, pz)): (Vec<f64>, (Vec<f64>, Vec<f64>)) =
                f.path.iter().map(|p| (p[0], (p[1], p[2]))).unzip();
            serde_json::json!([
                surface_trace(xs, ys, &f.z, labels.2, range),
                { "type": "scatter3d", "mode": "lines+markers", "x": px, "y": py, "z": pz,
                  "name": "path so far", "line": { "color": "black", "width": 5 },
                  "marker": { "size": 3, "color": "black" } },
                { "type": "scatter3d", "mode": "markers", "x": [f.point[0]], "y": [f.point[1]],
                  "z": [f.point[2]], "name": "this frame's model",
                  "marker": { "size": 7, "color": "#d62728", "line": { "color": "white", "width": 2 } } }
            ])
        };
        let data = traces(first);
        let plotly_frames: Vec<serde_json::Value> = frames
            .iter()
            .map(|f| serde_json::json!({ "name": f.label, "data": traces(f), "traces": [0, 1, 2] }))
            .collect();
        let step = |f: &Frame3d| {
            serde_json::json!({ "label": f.label, "method": "animate",
                "args": [[f.label], { "mode": "immediate", "frame": { "duration": 0, "redraw": true }, "transition": { "duration": 0 } }] })
        };
        let mut layout = scene_layout(title, (xs, ys), range, labels);
        layout["height"] = serde_json::json!(660);
        layout["showlegend"] = serde_json::json!(false);
        layout["scene"]["domain"] = serde_json::json!({ "x": [0.0, 0.92], "y": [0.16, 1.0] });
        layout["sliders"] = serde_json::json!([{ "active": 0, "x": 0.12, "len": 0.86, "y": 0.0,
            "currentvalue": { "prefix": "", "font": { "size": 14 } },
            "steps": frames.iter().map(step).collect::<Vec<_>>() }]);
        layout["updatemenus"] = serde_json::json!([{ "type": "buttons", "showactive": false,
            "x": 0.0, "y": 0.0, "xanchor": "left", "yanchor": "top", "direction": "left",
            "buttons": [
                { "label": "Play", "method": "animate", "args": [null, { "fromcurrent": true, "frame": { "duration": 700, "redraw": true }, "transition": { "duration": 0 } }] },
                { "label": "Pause", "method": "animate", "args": [[null], { "mode": "immediate", "frame": { "duration": 0, "redraw": false }, "transition": { "duration": 0 } }] }
            ] }]);
        let _ = writeln!(
            self.body,
            "<div class=\"fig\" data-figure3d=\"{id}\" data-animation=\"{id}\" data-frames=\"{n}\"><div id=\"{id}\" style=\"width:720px;height:660px\"></div><div class=\"cap\">{} — drag to rotate; the slider or Play moves through the snapshots</div><script>window.__surfaces3d=(window.__surfaces3d||[]).concat([[\"{id}\",{},{},{}]]);</script></div>",
            escape(title),
            js(&data),
            js(&layout),
            js(&serde_json::Value::Array(plotly_frames)),
            n = frames.len()
        );
    }

    /// An image file beside the page (a GIF, say) with a caption (escaped).
    pub(crate) fn image(&mut self, file: &str, alt: &str, caption: &str) {
        let file = escape(file);
        let _ = writeln!(
            self.body,
            "<div class=\"fig\"><img src=\"{file}\" alt=\"{}\" style=\"max-width:100%\"><div class=\"cap\">{} — <a href=\"{file}\">{file}</a></div></div>",
            escape(alt),
            escape(caption)
        );
    }

    /// A table; cells are escaped; the first column is left-aligned.
    pub(crate) fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table><tr>");
        for (i, h) in header.iter().enumerate() {
            let _ = write!(
                self.body,
                "<th{}>{}</th>",
                if i == 0 { " class=\"l\"" } else { "" },
                escape(h)
            );
        }
        self.body.push_str("</tr>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for (i, c) in r.iter().enumerate() {
                let _ = write!(
                    self.body,
                    "<td{}>{}</td>",
                    if i == 0 { " class=\"l\"" } else { "" },
                    escape(c)
                );
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
    }

    /// The finished document.
    pub(crate) fn finish(self) -> String {
        let mut nav = String::new();
        for (id, t) in &self.toc {
            let _ = write!(nav, "<a href=\"#{}\">{}</a>", escape(id), escape(t));
        }
        let plotly = if self.plots_3d > 0 {
            format!("<script>{PLOTLY_JS}</script><script>(window.__surfaces3d||[]).forEach(function(s){{try{{Plotly.newPlot(s[0],s[1],s[2],{{staticPlot:false}});if(s[3])Plotly.addFrames(s[0],s[3]);}}catch(e){{document.getElementById(s[0]).dataset.error=String(e);}}}});</script>")
        } else {
            String::new()
        };
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\n<body><h1>{t}</h1><nav>{nav}</nav>\n{}{plotly}<script>{SELF_CHECK}</script></body></html>\n",
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
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let mut p = Page::new("<b>run</b>");
        p.section("s", "<i>");
        p.table(&["name"], &[vec!["<script>".into()]]);
        let html = p.finish();
        // The page's own self-check script is there; the user's markup is not.
        assert!(
            !html.contains("<script>alert") && !html.contains("<b>run") && !html.contains("<i>")
        );
        assert!(html.contains("&lt;script&gt;") && html.contains("&lt;b&gt;run"));
    }
}
