"""FID, KID and reconstruction FID of a training run: built from the config, called with a state.

`FidEvaluator(config, model, reference_batches, heldout_batches, cache_dir)(replicated_state)`
returns `fid` and `kid` (+ `kid_std`) of `fid_num_samples` generated images against the training
split, and `fid_rec`: the FID of deterministic reconstructions of held-out images against the
same statistics. Generation and reconstruction use the running BatchNorm averages (evaluation
mode); generated images and reconstructions are stored-as-8-bit (`fid.quantize_8bit`), like the
real images they are compared with. The training split's features are computed once and cached
in `cache_dir`, keyed by everything they depend on. TensorFlow-free: the data comes in as
callables returning this host's batches.
"""

import hashlib
import json
import logging
from typing import Any, Callable, Dict, Iterable, Optional

import jax
import ml_collections
import numpy as np

from sintrovae_jax.core import inference
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.data import image_files
from sintrovae_jax.evaluators import fid, inception
from sintrovae_jax.io import fs, hosts

Batches = Callable[[], Iterable[np.ndarray]]


def reference_key(config: ml_collections.ConfigDict, weights_digest: str) -> str:
  """What the training split's statistics depend on, hashed (the cache file's name). For an
  image folder: its path and its sorted listing (names, not modification times, which a bucket
  does not keep for folders): replacing a file under the same name needs the cache cleared."""
  source = {'dataset': config.dataset, 'split': config.train_split,
            'image_size': config.image_size, 'num': config.fid_num_reference,
            'weights': weights_digest}
  if config.dataset == 'image_folder':
    folder = fs.absolute(config.data_dir)
    listing = '\n'.join(image_files.list_image_folder(folder))
    source['folder'] = folder
    source['listing'] = hashlib.sha256(listing.encode()).hexdigest()
  else:
    source['data_dir'] = config.data_dir
  return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]


class FidEvaluator:
  """Generated, reconstructed and real Inception features of a run, and their FID and KID."""

  def __init__(self, config: ml_collections.ConfigDict, model: SoftIntroVAE,
               reference_batches: Batches, heldout_batches: Batches, cache_dir: str,
               generate: Optional[Callable] = None, reconstruct: Optional[Callable] = None):
    """`generate(state, indices)` and `reconstruct(state, images)` (8-bit-quantised images in
    [0, 1]) replace the defaults, `model`'s decoder and reconstruction, for other models (the
    style variant's)."""
    self.config, self.model = config, model
    self.reference_batches, self.heldout_batches = reference_batches, heldout_batches
    self.cache_dir = cache_dir
    digest = inception.file_digest(config.fid_inception_weights)  # read the file once
    variables = inception.load_params(config.fid_inception_weights, cache_dir, digest)
    self.reference_file = fs.join(cache_dir, f'reference_{reference_key(config, digest)}.npz')
    self.batch_per_host = max(1, config.fid_batch_size // jax.process_count())
    recon_loss, z_dim = config.recon_loss, model.z_dim
    key = jax.random.fold_in(jax.random.PRNGKey(config.eval_seed), 0xF1D)

    def default_generate(state, indices):  # sample i's noise depends on (eval_seed, i) alone
      z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (z_dim,)))(indices)
      return fid.quantize_8bit(inference.decode(model, state, z, recon_loss))

    def default_reconstruct(state, images):
      return fid.quantize_8bit(inference.reconstruct(model, state, images, recon_loss))

    generate = generate or default_generate
    reconstruct = reconstruct or default_reconstruct

    self.extractor = fid.FeatureExtractor(variables, self.batch_per_host)
    self.generate, self.reconstruct = jax.pmap(generate), jax.pmap(reconstruct)
    self._reference = None

  def reference(self) -> fid.FeatureSet:
    """The training split's features: from the cache, or computed on all hosts and cached."""
    if self._reference is None:
      if hosts.all_hosts(fs.exists(self.reference_file)):
        self._reference = fid.FeatureSet.load(self.reference_file)
        logging.info('FID reference statistics (%d images) from %s', self._reference.num,
                     self.reference_file)
      else:
        features = fid.extract(self.extractor, self.reference_batches(),
                               total=self.config.fid_num_reference, what='the training split')
        self._reference = fid.FeatureSet.from_features(features)
        if hosts.is_leader():  # (every host holds the gathered features; one writes them)
          self._reference.save(self.reference_file)
        hosts.barrier('FID reference statistics written')
        logging.info('FID reference statistics of %d training images cached in %s',
                     self._reference.num, self.reference_file)
    return self._reference

  def __call__(self, replicated_state: Any) -> Dict[str, float]:
    """FID/KID of samples and FID of reconstructions; `replicated_state` as pmap holds it."""
    config = self.config
    reference = self.reference()
    generated = fid.extract(self.extractor,
                            fid.index_batches(config.fid_num_samples, self.batch_per_host),
                            replicated_state, self.generate, config.fid_num_samples,
                            'generated images')
    results = fid.compare(fid.FeatureSet.from_features(generated), reference,
                          config.kid_subsets, config.kid_subset_size, config.fid_matrix_sqrt)
    reconstructed = fid.FeatureSet.from_features(fid.extract(
        self.extractor, self.heldout_batches(), replicated_state, self.reconstruct,
        config.fid_num_samples, 'reconstructions'))
    fid_rec = fid.distance(reconstructed, reference, config.fid_matrix_sqrt)
    return {'fid': results['fid'], 'kid': results['kid'], 'kid_std': results['kid_std'],
            'fid_rec': fid_rec, 'fid_num_samples': results['n_a'],
            'fid_num_reference': reference.num, 'fid_num_reconstructions': reconstructed.num}
