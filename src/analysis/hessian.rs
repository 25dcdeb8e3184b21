//! Hessian eigenvalues and curvature summaries (§6, Figure 7). Being written.
