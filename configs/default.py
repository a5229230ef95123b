"""Every knob of a sintrovae-jax run, with its default. Other configs change a few fields."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data. `dataset` is a TFDS name ('mnist', 'fashion_mnist', 'cifar10', 'svhn_cropped',
  # 'celeb_a_hq/256', 'celeb_a_hq/1024'), 'image_folder' (images under `data_dir`), or a 2D set
  # ('8gaussians', '2spirals', 'checkerboard', 'rings'; or 'npy' to read `data_file`), or
  # 'point_folder' (3D point clouds under `data_dir`, configs/shapenet_points.py).
  c.dataset = 'cifar10'
  c.data_dir = ''             # TFDS data_dir, or the image folder; '' = TFDS default
  c.data_file = ''            # .npy file of points [N, D] for dataset='npy'
  c.train_split = 'train'
  c.eval_split = 'test'       # '' = evaluate on the training split
  c.image_size = 32
  c.image_channels = 3        # image folders: 1 (grey, e.g. digits) or 3; TFDS sets fix their own
  c.random_flip = False       # random horizontal mirror (the reference mirrors CelebA)
  c.shuffle_buffer = 10_000
  c.point_categories = ''     # point_folder: sub-folders (names or ShapeNet synset ids), 'a,b'
  c.num_points = 2048         # point_folder: points per cloud (files must hold exactly this many)

  # Model. Images use the residual networks, 2D/tabular data the MLPs.
  c.channels = (64, 128, 256)
  c.mlp_hidden = (256, 256, 256, 256)
  c.z_dim = 128
  c.compute_dtype = 'float32'  # or 'bfloat16'; parameters and losses stay float32
  # 'default' (the backend's: TF32 convolutions on NVIDIA GPUs, as PyTorch's cuDNN default),
  # 'high' or 'highest' (full float32 matmuls, as PyTorch's default for Linear layers).
  c.matmul_precision = 'default'
  # Recompute the image networks' residual blocks (the style variant: its encoder and decoder
  # blocks) in the backward pass instead of keeping their activations: less memory per image
  # (for 1024 px), more FLOPs. Same gradients.
  c.remat = False
  # Training steps per compiled call (one program runs up to this many, fewer where a log,
  # checkpoint, picture, FID or phase boundary comes first): fewer dispatches for small, launch-
  # bound steps. Any value > 1 trains bit for bit as any other; 1 (one program per step) equals
  # them to float32 rounding (XLA fuses a loop body otherwise than a lone step).
  c.steps_per_dispatch = 1

  # Objective (ALGORITHM.md).
  c.beta_kl = 1.0
  c.beta_rec = 1.0
  c.beta_neg = 256.0
  c.gamma_r = 1e-8
  c.recon_loss = 'mse'        # 'mse', 'l1' or 'bce'
  # How loss_rec and the decoder's loss_rr / loss_rf reduce for 'l1' and 'bce': 'reference' (the
  # authors' reduction="mean": mean over every element) or 'sum' (per-example sums, like 'mse' and
  # the exp-ELBO terms). 'mse' is the same under both.
  c.recon_reduction = 'reference'
  c.scale = -1.0              # s; -1 = 1/(C*H*W) for images, 0.5 for vectors, 1/(3N) for clouds
  c.prior_std = 1.0           # prior N(0, prior_std^2 I); only point clouds may change it (0.2)

  # Optimisation.
  c.batch_size = 32           # global, over all devices and hosts
  c.learning_rate = 2e-4
  c.lr_decay_steps = ()       # multiply the rate by lr_decay_factor from each of these steps on
  c.lr_decay_factor = 0.1
  c.num_train_steps = 390_625  # 250 CIFAR-10 epochs at batch 32
  c.num_vae_steps = 0         # vanilla-VAE warm-up steps
  c.seed = 0

  # Training options (README "Training options"); each is off by default.
  c.ema_decay = 0.0           # weight EMA of both networks (e.g. 0.999); 0 = off
  c.augment = ''              # DiffAugment of encoder inputs: 'translation', 'cutout' or both
  c.augment_p = 0.5           # each augmentation's probability per example
  # 'standard', 'bootstrap' (target decoder; configs/cifar10_bootstrap.py), 'points' (the 3D
  # variant, which point clouds need; configs/shapenet_points.py), 'translation' (two encoders,
  # configs/translation.py) or 'style' (below).
  c.variant = 'standard'
  c.bootstrap_refresh_steps = 1_563  # bootstrap: copy D into the target after every N steps

  # The translation family (variant='translation'; configs/translation.py, docs/translation.md):
  # a class encoder and a content encoder (each of `channels`) and an AdaIN generator. The code
  # is [z_class, z_content]: z_dim must equal translation_class_dim + translation_content_dim.
  c.translation_class_dim = 256
  c.translation_content_dim = 128
  c.translation_generator_channels = (256, 256, 256, 256)  # one AdaIN layer per doubling
  c.translation_modulation_layers = 2  # Dense+lrelu layers from z_class to the AdaIN parameters
  c.translation_modulation_width = 256
  c.translation_grid_size = 5  # the translation grid: identities (rows) x poses (columns)

  # The style-based variant (variant='style'; configs/ffhq256.py, README "Style-based
  # Soft-IntroVAE", VARIANTS.md section 1): ALAE networks grown from 4 px to image_size, one
  # resolution ("lod") after another. z_dim is the latent size; `scale` is used as given.
  c.style_start_channels = 64   # channels at image_size; doubled per halving ...
  c.style_max_channels = 512    # ... up to this many
  c.style_mapping_layers = 8    # mapping_fl's dense layers (mapping_tl has 3)
  c.style_fused_from = 128      # fused stride-2 convolutions at and above this resolution
  # Per lod (4, 8, ..., image_size px; one entry each): images trained at that resolution (its
  # fade-in included), the global batch, the learning rate and beta_neg.
  c.style_lod_images = ()
  c.style_lod_batch = ()
  c.style_lod_learning_rate = ()
  c.style_lod_beta_neg = ()
  c.style_fade_images = 0       # images of each new resolution's fade-in
  c.style_vae_images = 0        # vanilla-VAE warm-up at 4 px (the reference: one epoch)
  c.style_mixing_prob = 0.9     # style mixing of the prior samples, per batch
  c.style_ema_half_life_images = 10_000.0  # sampling model: EMA with this half-life
  c.style_dlatent_avg_beta = 0.995  # running average of w (for truncation at sampling)
  c.style_truncation_psi = 0.7  # --mode=sample's truncated grid; 1 = off
  c.style_truncation_cutoff = 8  # style slots < cutoff are truncated

  # Logging, pictures, checkpoints, evaluation.
  c.log_every_steps = 100
  c.sample_every_steps = 5_000
  c.checkpoint_every_steps = 5_000
  c.keep_checkpoints = 3
  c.num_grid_images = 64       # per panel of the real / reconstruction / sample grid
  c.max_nonfinite_steps = 20   # consecutive skipped (non-finite) steps before stopping
  c.profile_steps = 0          # >0: capture a profile of this many steps (clu Profile)
  # Compiled programs are kept here, so a restarted run skips compiling ('' = off; '{workdir}' is
  # replaced by --workdir; a JAX_COMPILATION_CACHE_DIR in the environment takes precedence).
  c.compilation_cache_dir = '{workdir}/compilation_cache'
  c.eval_seed = 1234
  c.num_eval_examples = 5_000  # images: examples for the final evaluation
  c.num_eval_points = 5_000    # 2D: real and generated points for KL / JSD
  c.num_eval_clouds = 1_000    # point clouds: test clouds (at most) and as many generated ones

  # Likelihood and out-of-distribution detection (--mode=ood; README "Likelihood and OOD").
  c.ood_dataset = ''          # a TFDS name (e.g. svhn_cropped) or 'image_folder'
  c.ood_data_dir = ''         # the OOD image folder, for ood_dataset='image_folder'
  c.ood_split = 'test'        # TFDS split of the OOD set
  c.likelihood_samples = 100  # K, importance samples per example for log p(x)
  c.likelihood_sigma = -1.0   # decoder noise scale; -1 = sqrt(beta_kl / (2 beta_rec)) for mse
  # Likelihood regret (Xiao et al. 2020; evaluators/regret.py): each image's encoder refitted by
  # Adam for this many steps (0 = off; the authors: 100), the authors' learning rate and L2 weight
  # decay. Off by default for now: it costs `steps` encoder passes per image, and its float32
  # values are not yet reproducible across device counts (README, "Likelihood and OOD").
  c.ood_regret_steps = 0
  c.ood_regret_learning_rate = 2e-4
  c.ood_regret_weight_decay = 5e-5
  c.ood_compressor = 'png'    # input complexity's L(x): 'png' (level 9) or 'jpeg2000' (lossless)

  # FID and KID (images; README "FID and KID"). Off until the Inception weights are given.
  c.fid_inception_weights = ''  # pt_inception-2015-12-05-6726825d.pth or default_1.pt
  c.fid_every_steps = 0         # 0 = only at the end of training
  c.fid_num_samples = 50_000    # generated images (and at most this many reconstructions)
  c.fid_num_reference = 50_000  # training images for the reference statistics (at most)
  c.fid_batch_size = 200        # images per Inception call, over all devices and hosts
  c.fid_cache_dir = ''          # converted weights and reference statistics; '' = WORKDIR/fid_cache
  c.fid_matrix_sqrt = 'scipy'   # 'scipy' (pytorch-fid's sqrtm) or 'eigh' (same trace, faster)
  c.kid_subsets = 100           # KID: subsets of ...
  c.kid_subset_size = 1000      # ... this many images each (cut to the smaller set)
  return c
