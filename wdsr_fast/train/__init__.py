"""Training and evaluation: the run's options (``config``), its files (``state``), the loop (``loop``), the data
(``data``, ``imresize``) and the SR metrics (``metrics``, ``evaluation``)."""
