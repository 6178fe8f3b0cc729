"""A Julia set, a row per call, with MPIPoolExecutor.map on an mpigate pool (mpi4py's
demo/futures/run_julia.py, with the one import changed).

    PYTHONPATH=client/python:bazel-bin/client/python /usr/bin/python3 \
        examples/python/julia.py --width 78 --height 32 --chunksize 4

Prints the set as text (or writes a PGM image with --pgm FILE) and a checksum of the iteration
counts, which --check compares with a serial run. The pool: $MPIGATE_ENDPOINT, the endpoint
file, or a private one of --workers workers.
"""

import argparse

from mpigate.futures import MPIPoolExecutor

C = complex(-0.8, 0.156)
MAX_ITERATIONS = 200
X_RANGE = (-1.6, 1.6)
Y_RANGE = (-1.0, 1.0)


def julia_row(y, width):
    """The iteration counts of one row of the set."""
    counts = []
    for column in range(width):
        z = complex(X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * column / (width - 1), y)
        count = 0
        while abs(z) <= 2 and count < MAX_ITERATIONS:
            z = z * z + C
            count += 1
        counts.append(count)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=78)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--chunksize", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--pgm", help="write the image to this file instead of printing it")
    parser.add_argument("--check", action="store_true", help="compare with a serial run")
    args = parser.parse_args()

    ys = [Y_RANGE[1] - (Y_RANGE[1] - Y_RANGE[0]) * row / (args.height - 1)
          for row in range(args.height)]
    with MPIPoolExecutor(args.workers) as executor:
        image = list(executor.map(julia_row, ys, [args.width] * args.height,
                                  chunksize=args.chunksize))
    if args.pgm:
        with open(args.pgm, "w", encoding="ascii") as file:
            file.write(f"P2\n{args.width} {args.height}\n{MAX_ITERATIONS}\n")
            for counts in image:
                file.write(" ".join(map(str, counts)) + "\n")
    else:
        shades = " .:-=+*#%@"
        for counts in image:
            # A power below 1 spreads the many low counts over the light shades.
            print("".join(shades[min(len(shades) - 1,
                                     int(len(shades) * (c / MAX_ITERATIONS) ** 0.4))]
                          for c in counts))
    checksum = sum(sum(counts) for counts in image)
    print(f"checksum {checksum}")
    if args.check:
        serial = [julia_row(y, args.width) for y in ys]
        print(f"matches the serial run: {serial == image}")


if __name__ == "__main__":
    main()
