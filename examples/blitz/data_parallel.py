"""Blitz part 5: DataParallel's API (seed 000, section 五). graphc runs the model on one
device, so the wrapped model sees the whole batch, as PyTorch does with one GPU."""

import graphc as torch
import graphc.nn as nn
from graphc.utils.data import DataLoader, Dataset

input_size, output_size, batch_size, data_size = 5, 2, 30, 100


class RandomDataset(Dataset):
    def __init__(self, size, length):
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index):
        return self.data[index]

    def __len__(self):
        return self.len


class Model(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.fc = nn.Linear(input_size, output_size)

    def forward(self, input):
        output = self.fc(input)
        print("\tIn Model: input size", input.size(), "output size", output.size())
        return output


def main() -> None:
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    rand_loader = DataLoader(
        dataset=RandomDataset(input_size, data_size), batch_size=batch_size, shuffle=True
    )
    model = Model(input_size, output_size)
    if torch.cuda.device_count() > 1:
        print("Let's use", torch.cuda.device_count(), "GPUs!")
    model = nn.DataParallel(model)
    model.to(device)
    for data in rand_loader:
        input = data.to(device)
        output = model(input)
        print("Outside: input size", input.size(), "output_size", output.size())


if __name__ == "__main__":
    main()
