"""DVC pipeline stages that train and compare Keras models on MNIST."""
