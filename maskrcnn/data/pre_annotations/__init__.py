"""Pre-annotations: a model's predictions written in the formats annotation tools import, for the
annotator to correct instead of drawing every mask again (``maskrcnn predict --export``).

Shapes: an image is H rows x W columns; an instance's mask (H, W) bool, kept as COCO compressed RLE.

``instances`` (the images, classes and detected instances every writer reads), one writer per format,
each a pure function from those to the file's content: ``to_coco`` (a COCO instances file, RLE),
``to_labelme`` (one LabelMe file per image, polygons traced by ``contours``), ``to_cvat`` ("CVAT for
images 1.1" XML, masks), ``to_labelstudio`` (Label Studio tasks with brush predictions), ``to_yolo``
(Ultralytics segmentation label files and a dataset YAML, polygons traced by ``contours``), ``to_masks``
(instance-id and class PNGs, RGBA cut-outs; written image by image by ``mask_files``); ``export``
collects a run's images and writes the files. Each file reads back through ``maskrcnn convert-data``
(``data/formats``) to the same masks: exactly for the RLE and mask formats, within the tracing
tolerance for LabelMe's and YOLO's polygons.
"""
