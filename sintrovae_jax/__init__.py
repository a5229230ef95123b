"""sintrovae-jax: Soft-IntroVAE (Daniel & Tamar, CVPR 2021) in JAX/Flax."""

from sintrovae_jax.core.inference import decode, encode, negative_elbo, reconstruct, sample
from sintrovae_jax.core.losses import (decoded_to_data, decoder_loss, default_scale, encoder_loss,
                                       exp_elbo, kl_divergence, reconstruction_error,
                                       reparameterize, vae_loss)
from sintrovae_jax.core.objectives import (Draws, LossWeights, decoder_objective, encoder_objective,
                                           vae_objective)
from sintrovae_jax.core.train_state import (TrainState, create_train_state, ema_view,
                                            learning_rate_schedule, make_optimizer)
from sintrovae_jax.core.train_step import draw_normals, make_train_step
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.families.image.networks import ImageDecoder, MLPDecoder, MLPEncoder
from sintrovae_jax.families.residual import ImageEncoder
from sintrovae_jax.families.translation.inference import translate, translation_grid
from sintrovae_jax.families.translation.networks import translation_vae

__version__ = '0.1.0'
