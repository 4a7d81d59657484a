"""The caption decoder (the PyTorch twin of engine/caption.c) and its training noise.

concept vector x (K, probabilities) -> c = relu(W_cin x + b)           (C)
h0 = tanh(W_h c + b), c0 = tanh(W_c c + b)
step t: input [emb(w_{t-1}); c] -> LSTM (gates i, f, g, o like torch) -> logits = W_out h + b
"""
import numpy as np
import torch
from torch import nn


class Decoder(nn.Module):
    def __init__(self, n_words, n_concepts, emb=256, hidden=512, cond=256, dropout=0.3):
        super().__init__()
        self.cin = nn.Linear(n_concepts, cond)
        self.init_h = nn.Linear(cond, hidden)
        self.init_c = nn.Linear(cond, hidden)
        self.emb = nn.Embedding(n_words, emb)
        self.lstm = nn.LSTM(emb + cond, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_words)
        self.drop = nn.Dropout(dropout)

    def start(self, x):
        c = torch.relu(self.cin(x))
        return c, (torch.tanh(self.init_h(c)).unsqueeze(0), torch.tanh(self.init_c(c)).unsqueeze(0))

    def forward(self, x, tokens_in):
        c, state = self.start(x)
        e = self.drop(self.emb(tokens_in))
        inp = torch.cat([e, c.unsqueeze(1).expand(-1, tokens_in.shape[1], -1)], dim=2)
        y, _ = self.lstm(inp, state)
        return self.out(self.drop(y))

    def step(self, c, state, token):
        """One decoding step for a batch of beams: token (B,) -> logits (B, V), new state."""
        inp = torch.cat([self.emb(token), c], dim=1).unsqueeze(1)
        y, state = self.lstm(inp, state)
        return self.out(y[:, 0]), state


def noisy_concepts(soft, df_probs, rng, return_dropped=False):
    """Makes a caption group's concept vector look like the concept head's output.

    soft: (B, K) fraction of the image's captions naming each concept. True concepts are
    dropped (more often when few captions name them) and rescaled to uncertain
    probabilities; false concepts are added in proportion to how common they are; every
    entry gets a little background noise, as sigmoid outputs never reach 0.
    return_dropped: also return the (B, K) mask of true concepts the noise dropped.
    """
    B, K = soft.shape
    keep = rng.random((B, K)) < (0.3 + 0.6 * soft)
    val = np.where((soft > 0) & keep, rng.uniform(0.2, 1.0, (B, K)) * (0.5 + 0.5 * soft), 0.0)
    n_false = rng.poisson(4.0, B)
    for b in range(B):
        if n_false[b]:
            idx = rng.choice(K, size=n_false[b], p=df_probs)
            val[b, idx] = np.maximum(val[b, idx], rng.uniform(0.1, 0.6, n_false[b]))
    dropped = (soft > 0) & ~keep
    val += 0.06 * rng.random((B, K)) ** 3
    val = np.clip(val, 0.0, 1.0).astype(np.float32)
    return (val, dropped) if return_dropped else val


PAD, EOS, UNK = 0, 1, 2


def blocked(tokens, t, ngram, once=None):
    """No immediate repetition, no second use of a content word (once[t]), no n-gram the
    caption holds already (as engine/caption.c)."""
    if tokens and tokens[-1] == t:
        return True
    if once is not None and once[t] and t in tokens:
        return True
    if ngram < 2 or len(tokens) < ngram - 1:
        return False
    tail = tokens[len(tokens) - (ngram - 1):]
    for s in range(len(tokens) - ngram + 1):
        if tokens[s + ngram - 1] == t and tokens[s:s + ngram - 1] == tail:
            return True
    return False


@torch.no_grad()
def beam_search(model, x, width=3, max_len=20, alpha=1.0, ngram=3, gamma=1.0, once=None):
    """The exact search of engine/caption.c beam_search(): returns (tokens, normalised score).

    x: (K,) concept probabilities. Candidates are ranked by summed log-probability, ties
    by beam then token; <eos> finishes a hypothesis, scored by sum / (words + 1)^alpha.
    """
    x = x.float().clamp(0, 1)
    if gamma != 1.0:
        x = x ** gamma
    c, state = model.start(x.unsqueeze(0))
    live = [([], 0.0)]
    best, best_norm, finished = [], None, 0
    for _ in range(max_len + 1):
        n = len(live)
        tok = torch.tensor([h[0][-1] if h[0] else EOS for h in live])
        logits, (h, cs) = model.step(c.expand(n, -1), state, tok)
        lp = torch.log_softmax(logits.double(), dim=1).float().numpy()
        pool = []
        for b, (tokens, score) in enumerate(live):
            cand = []
            for t in np.argsort(-lp[b], kind="stable"):
                t = int(t)
                if t in (PAD, UNK):
                    continue
                if t == EOS:
                    if not tokens:
                        continue
                elif len(tokens) >= max_len or blocked(tokens, t, ngram, once):
                    continue
                cand.append((float(np.float32(score) + lp[b, t]), b, t))
                if len(cand) == 2 * width:
                    break
            pool += cand
        pool.sort(key=lambda p: (-p[0], p[1], p[2]))
        nxt, rows = [], []
        for score, b, t in pool:
            if len(nxt) == width:
                break
            tokens = live[b][0]
            if t == EOS:
                norm = score / float(len(tokens) + 1) ** alpha
                if best_norm is None or norm > best_norm:
                    best, best_norm = list(tokens), norm
                finished += 1
                continue
            nxt.append((tokens + [t], score))
            rows.append(b)
        if not nxt:
            break
        idx = torch.tensor(rows)
        state = (h[:, idx], cs[:, idx])
        live = nxt
        if finished >= width:
            break
    return best, best_norm
