"""CIFAR-10 with the bootstrap Soft-IntroVAE (VARIANTS.md section 2; "not used in the paper").

As the reference's soft_intro_vae_bootstrap/ runs it, with these choices:
- gamma_r = 1.0: the value its training function always uses (its main.py parses --gamma_r but
  never passes it; its README's 1e-8 never applies).
- beta_neg = 256: what its README recommends for CIFAR-10-like data and its tutorial notebook uses,
  and the main variant's CIFAR-10 value (its main.py's default of 1.0 is a placeholder).
- The target decoder is refreshed from D (parameters and BatchNorm statistics) once per epoch:
  every ceil(50,000 / 32) = 1,563 steps. It starts from its own random initialisation, as there.
- num_vae_steps = 0, as there. (Its warm-up, if enabled, reconstructs through the frozen target
  and never trains D; ours goes through D: sintrovae_jax/core/objectives.py, vae_objective.)
- Pictures reconstruct through D (the reference's previews go through T).
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'cifar10'
  c.variant = 'bootstrap'
  c.bootstrap_refresh_steps = -(-50_000 // 32)
  c.gamma_r = 1.0
  c.beta_neg = 256.0
  return c
