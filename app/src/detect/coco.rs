//! COCO class names for the two numberings models use.
//!
//! TF Object Detection models (the SSD CPU detector) number classes by the
//! original COCO category ids 1..=90, which have 10 holes (ids of categories
//! dropped from the 2014 release) and 0 for background. YOLO-family models
//! (the RKNN detectors) number the 80 used categories contiguously 0..=79 in
//! the same order. Rule names and event filters refer to classes by name, so
//! both tables map in both directions; names are the official COCO ones
//! ("motorcycle", "couch", "tv"), not darknet's ("motorbike", "sofa").

/// Name given to ids that name no class.
pub const UNKNOWN: &str = "unknown";

/// The TF Object Detection label map: index = COCO category id, `None` for
/// background (0) and the ten unused ids.
const COCO91: [Option<&str>; 91] = [
    None,
    Some("person"),
    Some("bicycle"),
    Some("car"),
    Some("motorcycle"),
    Some("airplane"),
    Some("bus"),
    Some("train"),
    Some("truck"),
    Some("boat"),
    Some("traffic light"),
    Some("fire hydrant"),
    None,
    Some("stop sign"),
    Some("parking meter"),
    Some("bench"),
    Some("bird"),
    Some("cat"),
    Some("dog"),
    Some("horse"),
    Some("sheep"),
    Some("cow"),
    Some("elephant"),
    Some("bear"),
    Some("zebra"),
    Some("giraffe"),
    None,
    Some("backpack"),
    Some("umbrella"),
    None,
    None,
    Some("handbag"),
    Some("tie"),
    Some("suitcase"),
    Some("frisbee"),
    Some("skis"),
    Some("snowboard"),
    Some("sports ball"),
    Some("kite"),
    Some("baseball bat"),
    Some("baseball glove"),
    Some("skateboard"),
    Some("surfboard"),
    Some("tennis racket"),
    Some("bottle"),
    None,
    Some("wine glass"),
    Some("cup"),
    Some("fork"),
    Some("knife"),
    Some("spoon"),
    Some("bowl"),
    Some("banana"),
    Some("apple"),
    Some("sandwich"),
    Some("orange"),
    Some("broccoli"),
    Some("carrot"),
    Some("hot dog"),
    Some("pizza"),
    Some("donut"),
    Some("cake"),
    Some("chair"),
    Some("couch"),
    Some("potted plant"),
    Some("bed"),
    None,
    Some("dining table"),
    None,
    None,
    Some("toilet"),
    None,
    Some("tv"),
    Some("laptop"),
    Some("mouse"),
    Some("remote"),
    Some("keyboard"),
    Some("cell phone"),
    Some("microwave"),
    Some("oven"),
    Some("toaster"),
    Some("sink"),
    Some("refrigerator"),
    None,
    Some("book"),
    Some("clock"),
    Some("vase"),
    Some("scissors"),
    Some("teddy bear"),
    Some("hair drier"),
    Some("toothbrush"),
];

/// The 80 used categories in id order: the contiguous YOLO numbering.
const COCO80: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// Which numbering a model's class ids use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CocoLabels {
    /// COCO category ids 1..=90 with holes, 0 background (TF Object Detection).
    Ids91,
    /// Contiguous 0..=79 (YOLO, rknn_model_zoo's `coco_80_labels_list.txt`).
    Contiguous80,
}

impl CocoLabels {
    /// The name of class `id`, or [`UNKNOWN`].
    pub fn name(self, id: u16) -> &'static str {
        let id = usize::from(id);
        let name = match self {
            CocoLabels::Ids91 => COCO91.get(id).copied().flatten(),
            CocoLabels::Contiguous80 => COCO80.get(id).copied(),
        };
        name.unwrap_or(UNKNOWN)
    }

    /// The id of the class called `name` (exact, official COCO spelling).
    pub fn id(self, name: &str) -> Option<u16> {
        let index = match self {
            CocoLabels::Ids91 => COCO91.iter().position(|n| *n == Some(name)),
            CocoLabels::Contiguous80 => COCO80.iter().position(|n| *n == name),
        };
        index.and_then(|i| u16::try_from(i).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_ids() {
        let l = CocoLabels::Ids91;
        assert_eq!(l.name(1), "person");
        assert_eq!(l.name(2), "bicycle");
        assert_eq!(l.name(3), "car");
        assert_eq!(l.name(18), "dog");
        assert_eq!(l.name(90), "toothbrush");
        for hole in [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91, 1000] {
            assert_eq!(l.name(hole), UNKNOWN, "id {hole}");
        }
        assert_eq!(l.id("dog"), Some(18));
        assert_eq!(l.id("tv"), Some(72));
        assert_eq!(l.id("unknown"), None);
        assert_eq!(l.id("Dog"), None);
    }

    #[test]
    fn contiguous_ids() {
        let l = CocoLabels::Contiguous80;
        assert_eq!(l.name(0), "person");
        assert_eq!(l.name(16), "dog");
        assert_eq!(l.name(79), "toothbrush");
        assert_eq!(l.name(80), UNKNOWN);
        assert_eq!(l.id("car"), Some(2));
        assert_eq!(l.id("background"), None);
    }

    #[test]
    fn the_80_list_is_the_91_map_without_holes() {
        let from91: Vec<&str> = COCO91.iter().flatten().copied().collect();
        assert_eq!(from91, COCO80);
        for (i, name) in COCO80.iter().enumerate() {
            let id80 = u16::try_from(i).unwrap();
            assert_eq!(CocoLabels::Contiguous80.id(name), Some(id80));
            let id91 = CocoLabels::Ids91.id(name).unwrap();
            assert_eq!(CocoLabels::Ids91.name(id91), *name);
        }
    }
}
