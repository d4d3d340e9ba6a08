"""The PyTorch reference for `suite bench resnet50` at 224²: torchvision's ResNet-50 trained the fast way
(channels-last, bf16 autocast, torch.compile, SGD), on synthetic data already on the GPU. Hand-written because
no library times a training step for us; it follows PyTorch's performance-tuning guide. Runs only where torch,
torchvision and CUDA are all present (the lent GPU machine); returns None elsewhere."""

import statistics
import time


def resnet50_rate(batch_size, steps, epochs, classes=1000):
    """Images/s of torchvision ResNet-50 training steps at steady state (median over `epochs` timed runs of
    `steps` steps, after one warm-up run that includes compilation); None when it cannot run here."""
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    model = torchvision.models.resnet50(num_classes=classes).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch_size, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch_size,), device=dev)

    @torch.compile
    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    def run():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            step(x, y)
            opt.step()
        torch.cuda.synchronize()

    run()  # compilation and autotuning
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return steps * batch_size / statistics.median(times)
