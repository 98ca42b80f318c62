//! Gradient utilities shared by the learners.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Sum of squared gradients over a module's parameters.
struct GradSquares<'a> {
    grads: &'a GradientsParams,
    total: f32,
}

impl ModuleVisitor for GradSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += g.square().sum().into_scalar::<f32>();
        }
    }
}

/// Multiply every gradient by `scale`.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    scale: f32,
}

impl ModuleVisitor for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g.mul_scalar(self.scale));
        }
    }
}

/// Clip the global L2 norm of all of `model`'s gradients to `max_norm` (PyTorch's
/// `clip_grad_norm_`; burn's own clipping works per parameter; 0 = no clipping).
/// Returns the norm before clipping.
pub(crate) fn clip_grad_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> f32 {
    let mut sq = GradSquares { grads, total: 0.0 };
    model.visit(&mut sq);
    let norm = sq.total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        model.visit(&mut GradScale {
            grads,
            scale: max_norm / (norm + 1e-6),
        });
    }
    norm
}
