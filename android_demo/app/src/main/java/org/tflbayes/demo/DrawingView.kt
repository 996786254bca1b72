package org.tflbayes.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Path
import android.util.AttributeSet
import android.view.MotionEvent
import android.view.View

/** A square canvas for one digit: white ink on black, read back as an H x W grey image in [0, 1]. */
class DrawingView(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    var onStrokeFinished: (() -> Unit)? = null
    private val path = Path()
    private val paint = Paint().apply {
        color = Color.WHITE
        style = Paint.Style.STROKE
        strokeCap = Paint.Cap.ROUND
        strokeJoin = Paint.Join.ROUND
        isAntiAlias = true
    }

    override fun onMeasure(widthMeasureSpec: Int, heightMeasureSpec: Int) {
        super.onMeasure(widthMeasureSpec, widthMeasureSpec)  // square
    }

    override fun onDraw(canvas: Canvas) {
        canvas.drawColor(Color.BLACK)
        paint.strokeWidth = width / 9f
        canvas.drawPath(path, paint)
    }

    override fun onTouchEvent(event: MotionEvent): Boolean {
        when (event.action) {
            MotionEvent.ACTION_DOWN -> path.moveTo(event.x, event.y)
            MotionEvent.ACTION_MOVE -> path.lineTo(event.x, event.y)
            MotionEvent.ACTION_UP -> onStrokeFinished?.invoke()
        }
        invalidate()
        return true
    }

    fun clear() {
        path.reset()
        invalidate()
    }

    /** The drawing averaged down to [h] x [w] pixels (area filtering), row-major, ink = 1. */
    fun pixels(h: Int, w: Int): FloatArray {
        val full = Bitmap.createBitmap(width, height, Bitmap.Config.ARGB_8888)
        draw(Canvas(full))
        val small = Bitmap.createScaledBitmap(full, w, h, true)
        val out = FloatArray(h * w) { i -> Color.red(small.getPixel(i % w, i / w)) / 255f }
        full.recycle()
        small.recycle()
        return out
    }
}
