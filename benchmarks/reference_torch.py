"""The reference's image iteration restated in PyTorch, timed on this machine's GPU.

ANCHORS.md timed the authors' PyTorch code on one H100. When our benchmark runs on another card,
this script re-measures a same-card baseline: ALGORITHM.md's residual encoder/decoder and one
Soft-IntroVAE iteration in the reference's order (encoder update with the decoder's parameters
frozen, then decoder update with the encoder's frozen; every network call in training mode;
summed-MSE reconstruction, mean over the batch). Timed like ANCHORS.md: random inputs, Adam,
5 warm-up iterations, median of 20, `torch.cuda.synchronize` around each.

Needs only torch (the GPU machine has it); not part of the library or its tests.

  python benchmarks/reference_torch.py --settings=cifar10:32,celebahq:8 --modes=fp32,tf32,bf16
"""

import argparse
import statistics
import time

import torch
from torch import nn
import torch.nn.functional as F

# ALGORITHM.md: (image size, channels, z_dim, beta_kl, beta_rec, beta_neg).
CONFIGS = {'cifar10': (32, (64, 128, 256), 128, 1.0, 1.0, 256.0),
           'celebahq': (256, (64, 128, 256, 512, 512, 512), 256, 1.0, 0.5, 1024.0)}


class ResBlock(nn.Module):

  def __init__(self, cin, cout):
    super().__init__()
    self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None
    self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)

  def forward(self, x):
    skip = x if self.skip is None else self.skip(x)
    h = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
    return F.leaky_relu(self.bn2(self.conv2(h)) + skip, 0.2)


class Encoder(nn.Module):

  def __init__(self, size, ch, z_dim):
    super().__init__()
    layers = [nn.Conv2d(3, ch[0], 5, padding=2, bias=False), nn.BatchNorm2d(ch[0]),
              nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
    for cin, cout in zip(ch[:-1], ch[1:]):
      layers += [ResBlock(cin, cout), nn.AvgPool2d(2)]
    layers.append(ResBlock(ch[-1], ch[-1]))
    self.main = nn.Sequential(*layers)
    self.fc = nn.Linear(ch[-1] * (size // 2 ** len(ch)) ** 2, 2 * z_dim)

  def forward(self, x):
    return self.fc(self.main(x).flatten(1)).chunk(2, dim=1)


class Decoder(nn.Module):

  def __init__(self, size, ch, z_dim):
    super().__init__()
    self.h0, self.c0 = size // 2 ** len(ch), ch[-1]
    self.fc = nn.Linear(z_dim, self.c0 * self.h0 ** 2)
    layers, cin = [], ch[-1]
    for c in reversed(ch):
      layers += [ResBlock(cin, c), nn.Upsample(scale_factor=2, mode='nearest')]
      cin = c
    layers += [ResBlock(cin, cin), nn.Conv2d(cin, 3, 5, padding=2)]
    self.main = nn.Sequential(*layers)

  def forward(self, z):
    return self.main(F.relu(self.fc(z)).view(-1, self.c0, self.h0, self.h0))


def reparam(mu, logvar):
  return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl(mu, logvar):  # per sample
  return -0.5 * torch.sum(1 + logvar - logvar.exp() - mu.pow(2), dim=1)


def rec_error(x, y):  # per sample, summed over pixels
  return (x - y).pow(2).flatten(1).sum(1)


def iteration(enc, dec, opt_e, opt_d, x, z_dim, betas, scale, gamma_r=1e-8):
  """One Soft-IntroVAE iteration as ALGORITHM.md orders it; returns (loss_E, loss_D)."""
  beta_kl, beta_rec, beta_neg = betas
  noise = torch.randn(x.shape[0], z_dim, device=x.device)
  # Encoder update: decoder parameters frozen, gradients still flow through it to the encoder.
  enc.requires_grad_(True)
  dec.requires_grad_(False)
  fake = dec(noise)
  mu, logvar = enc(x)
  z = reparam(mu, logvar)
  rec = dec(z)
  loss_rec = rec_error(x, rec).mean()
  kl_real = kl(mu, logvar).mean()
  rec_mu, rec_logvar = enc(rec.detach())
  rec_rec = dec(reparam(rec_mu, rec_logvar))
  fake_mu, fake_logvar = enc(fake.detach())
  rec_fake = dec(reparam(fake_mu, fake_logvar))
  exp_rec = torch.exp(-2 * scale * (beta_rec * rec_error(rec, rec_rec)
                                    + beta_neg * kl(rec_mu, rec_logvar))).mean()
  exp_fake = torch.exp(-2 * scale * (beta_rec * rec_error(fake, rec_fake)
                                     + beta_neg * kl(fake_mu, fake_logvar))).mean()
  loss_e = scale * (beta_rec * loss_rec + beta_kl * kl_real) + 0.25 * (exp_rec + exp_fake)
  opt_e.zero_grad()
  loss_e.backward()
  opt_e.step()
  # Decoder update: encoder (already updated) frozen.
  enc.requires_grad_(False)
  dec.requires_grad_(True)
  fake = dec(noise)
  rec = dec(z.detach())
  loss_rec = rec_error(x, rec).mean()
  rec_mu, rec_logvar = enc(rec)
  fake_mu, fake_logvar = enc(fake)
  rec_rec = dec(reparam(rec_mu, rec_logvar).detach())
  rec_fake = dec(reparam(fake_mu, fake_logvar).detach())
  loss_rr = rec_error(rec.detach(), rec_rec).mean()
  loss_rf = rec_error(fake.detach(), rec_fake).mean()
  kl_d = kl(rec_mu, rec_logvar).mean() + kl(fake_mu, fake_logvar).mean()
  loss_d = scale * (beta_rec * loss_rec + 0.5 * beta_kl * kl_d
                    + 0.5 * gamma_r * beta_rec * (loss_rr + loss_rf))
  opt_d.zero_grad()
  loss_d.backward()
  opt_d.step()
  return loss_e, loss_d


def bench(name, batch, mode, steps, warmup, device='cuda'):
  size, ch, z_dim, beta_kl, beta_rec, beta_neg = CONFIGS[name]
  torch.backends.cudnn.allow_tf32 = mode != 'fp32'  # PyTorch's default is True for convolutions
  torch.backends.cuda.matmul.allow_tf32 = False      # and False for matmuls
  torch.manual_seed(0)
  enc, dec = Encoder(size, ch, z_dim).to(device), Decoder(size, ch, z_dim).to(device)
  opt_e = torch.optim.Adam(enc.parameters(), 2e-4, betas=(0.9, 0.999))
  opt_d = torch.optim.Adam(dec.parameters(), 2e-4, betas=(0.9, 0.999))
  x = torch.rand(batch, 3, size, size, device=device)
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  scale = 1.0 / (3 * size * size)
  times = []
  for i in range(warmup + steps):
    sync()
    t0 = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=mode == 'bf16'):
      loss_e, loss_d = iteration(enc, dec, opt_e, opt_d, x, z_dim, (beta_kl, beta_rec, beta_neg),
                                 scale)
    sync()
    if i >= warmup:
      times.append(time.perf_counter() - t0)
  assert torch.isfinite(loss_e) and torch.isfinite(loss_d), 'the reference iteration diverged'
  return 1e3 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--settings', default='cifar10:32,cifar10:256,celebahq:8,celebahq:32')
  parser.add_argument('--modes', default='fp32,tf32,bf16',
                      help='fp32 (strict), tf32 (PyTorch default for convs), bf16 (autocast)')
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--device', default='cuda', help='cuda, or cpu for a smoke test')
  args = parser.parse_args()
  name = torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'
  print(f'device: {name}, torch {torch.__version__}, {args.steps} timed '
        f'iterations after {args.warmup} warm-up, median')
  print('| setting | batch | mode | ms/iteration | img/s |')
  print('|---|---|---|---|---|')
  for setting in args.settings.split(','):
    name, batch = setting.split(':')
    for mode in args.modes.split(','):
      ms = bench(name, int(batch), mode, args.steps, args.warmup, args.device)
      print(f'| {name} | {batch} | {mode} | {ms:.2f} | {int(batch) / ms * 1e3:,.1f} |', flush=True)


if __name__ == '__main__':
  main()
