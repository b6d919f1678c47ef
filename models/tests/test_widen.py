"""widen.py: a wider codec starts computing what the narrower one did."""

import unittest

import torch
from torch import nn

from splitfleet_models.codecs import GDN
from splitfleet_models.widen import widen_state


def decoder(wide: int) -> nn.Module:
    # SplitFleet's decoder shape: conv, inverse GDN, upsampling, conv, ReLU, conv, ReLU
    return nn.Sequential(nn.Conv2d(8, wide, 3, 1, 1), GDN(wide, inverse=True), nn.Upsample(scale_factor=2),
                         nn.Conv2d(wide, wide, 3, 1, 1), nn.ReLU(), nn.Conv2d(wide, 16, 3, 1, 1), nn.ReLU())


class WidenTest(unittest.TestCase):
    def test_the_wider_decoder_computes_what_the_narrow_one_did(self):
        torch.manual_seed(0)
        narrow, wide = decoder(12), decoder(24)
        state, grown = widen_state(wide.state_dict(), narrow.state_dict())
        wide.load_state_dict(state)
        self.assertIn("1.gamma", grown)
        self.assertNotIn("5.bias", grown)  # the output layer keeps its width
        x = torch.randn(3, 8, 4, 4)
        self.assertLess(float((narrow(x) - wide(x)).abs().max()), 1e-5)
        # and the new channels can learn: the output layer's weights from them get gradients
        wide(x).sum().backward()
        self.assertGreater(float(wide[5].weight.grad[:, 12:].abs().sum()), 0)

    def test_a_narrower_or_missing_parameter_is_refused(self):
        with self.assertRaises(ValueError):
            widen_state(decoder(12).state_dict(), decoder(24).state_dict())
        with self.assertRaises(ValueError):
            widen_state({"extra": torch.zeros(2)}, {})


if __name__ == "__main__":
    unittest.main()
