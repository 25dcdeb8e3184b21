//! A page being written into its output directory: figures are rendered
//! beside it as they are added, and `index.html` is written last,
//! atomically.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::report::figures::{render_scaled, write_file, Figure};
use crate::report::html::Page;
use crate::store::fsutil::DirLock;

/// The page of a report and the directory of its files.
#[derive(Debug)]
pub(crate) struct Output {
    dir: PathBuf,
    page: Page,
    /// PNG scale (1 to 3).
    scale: u32,
    /// One writer per output directory, until the page is written.
    _lock: DirLock,
}

impl Output {
    /// Creates `dir` (see [`create_output_dir`](crate::store::fsutil::create_output_dir))
    /// and locks it for a page titled `title`.
    pub(crate) fn create(dir: &Path, title: &str) -> Result<Output> {
        Ok(Output {
            _lock: DirLock::create(dir)?,
            dir: dir.to_path_buf(),
            page: Page::new(title),
            scale: 1,
        })
    }

    /// Sets the PNG scale of the figures added from now on (1 to 3; see
    /// [`ReportOptions::scale`](crate::report::ReportOptions::scale)).
    pub(crate) fn set_scale(&mut self, scale: u32) {
        self.scale = scale;
    }

    /// Renders `fig` to `STEM.png` and `STEM.svg` and adds it to the page.
    pub(crate) fn plot(&mut self, fig: &impl Figure, stem: &str, caption: &str) -> Result<()> {
        let svg = render_scaled(fig, &self.dir, stem, self.scale)?;
        self.page.figure(&svg, stem, caption);
        Ok(())
    }

    /// The directory the page and its figures are written to.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `index.html`; returns its path.
    pub(crate) fn finish(self) -> Result<PathBuf> {
        let index = self.dir.join("index.html");
        write_file(&index, self.page.finish().as_bytes())?;
        Ok(index)
    }
}

impl Deref for Output {
    type Target = Page;

    fn deref(&self) -> &Page {
        &self.page
    }
}

impl DerefMut for Output {
    fn deref_mut(&mut self) -> &mut Page {
        &mut self.page
    }
}
