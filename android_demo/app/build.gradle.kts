plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.tflbayes.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.tflbayes.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    androidResources {
        noCompress += "tflite"  // LiteRT maps models straight from the APK
    }
}

dependencies {
    implementation(project(":uq"))
    implementation("com.google.ai.edge.litert:litert:2.1.0")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("androidx.lifecycle:lifecycle-viewmodel-ktx:2.8.7")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
    implementation("com.google.android.material:material:1.12.0")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.8.1")
}

// Bundles written by `tflbayes convert` (one folder each: manifest.json + .tflite files) -> assets/bundles/.
// Compiled *_edgetpu.tflite files are left out: phones have no Edge TPU.
val copyBundles by tasks.registering(Sync::class) {
    val source = rootProject.file(providers.gradleProperty("tflbayes.bundles").getOrElse("../../bundles"))
    from(source) {
        include("*/manifest.json", "*/*.tflite")
        exclude("*/*_edgetpu.tflite")
    }
    into(layout.projectDirectory.dir("src/main/assets/bundles"))
    doFirst {
        if (!source.isDirectory) {
            throw GradleException("no bundles at $source: run `tflbayes convert ... --out $source/<name>` or pass -Ptflbayes.bundles=DIR")
        }
    }
}
tasks.named("preBuild") { dependsOn(copyBundles) }
